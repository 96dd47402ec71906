"""The physical graph: a plan turned into tasks with their operators, mailboxes and wiring.

Every chain subtask becomes a :class:`~flowactors.runtime.task.StreamTask` holding
fresh operator instances; an edge either chains two operators (a direct call) or
gets a :class:`~flowactors.runtime.writer.RecordWriter` per sending subtask, with
one mailbox channel per sender on the receiving side (one for a forward edge).
A restored run also hands every task the view of the checkpoint it restores from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowactors.checkpoint.config import Serializer
from flowactors.checkpoint.snapshot import RestoreView
from flowactors.checkpoint.storage import CompletedCheckpoint
from flowactors.errors import IncompatibleSnapshotError, InvalidGraphError
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.context import OperatorContext
from flowactors.runtime.failures import key_by_name
from flowactors.runtime.graph import Edge, Plan, Transformation
from flowactors.runtime.keyed import KeyedOperator, KeySelectorCheck
from flowactors.runtime.mailbox import Mailbox
from flowactors.runtime.operators import StreamOperator
from flowactors.runtime.task import BatchHandler, StreamTask
from flowactors.runtime.writer import Channel, Partitioning, PartitionSpec, RecordWriter
from flowactors.time.clock import SystemClock

__all__ = ["Restore", "RunInfo", "build_tasks"]


@dataclass(frozen=True)
class RunInfo:
    """What every operator of one run is told about the run."""

    job_name: str
    max_parallelism: int
    attempt: int
    run_id: str
    checkpointing: bool
    #: Per uid, the highest parallelism any run of the job started with.
    highest_parallelism: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Restore:
    """The snapshot a run restores from, and how."""

    checkpoint: CompletedCheckpoint
    serializer: Serializer
    allow_non_restored_state: bool = False


def _channels_per_receiver(plan: Plan, edge: Edge) -> int:
    """A forward edge gives each receiver one channel; others one per sending subtask."""
    return 1 if edge.kind is Partitioning.FORWARD else plan.parallelism[edge.upstream]


def build_tasks(
    plan: Plan, config: ExecutionConfig, run: RunInfo, restore: Restore | None = None
) -> tuple[list[StreamTask], dict[Transformation, list[StreamOperator]]]:
    """One task per chain subtask, wired: chained operators, writers, channel handlers."""
    operators: dict[Transformation, list[StreamOperator]] = {}
    tasks: dict[tuple[int, int], StreamTask] = {}  # (chain index, subtask) -> task
    chain_index = {id(c): i for i, c in enumerate(plan.chains)}

    # Channels of each chain head: one per upstream subtask of each input edge.
    channel_base: dict[tuple[Transformation, int], int] = {}
    num_channels: dict[Transformation, int] = {}
    for chain in plan.chains:
        base = 0
        for i, edge in enumerate(plan.inputs_of(chain.head)):
            channel_base[(chain.head, i)] = base
            base += _channels_per_receiver(plan, edge)
        num_channels[chain.head] = base

    clock = config.clock or SystemClock()
    for chain in plan.chains:
        ci = chain_index[id(chain)]
        for s in range(chain.parallelism):
            ops: list[StreamOperator] = []
            mailbox = Mailbox(num_channels[chain.head], config.mailbox_capacity)
            task = StreamTask(chain.name, s, ops, mailbox, config)
            task.processing_time = clock.service(task.post_control)
            for t in chain.members:
                try:
                    op = t.factory()
                except Exception as exc:
                    raise InvalidGraphError(
                        f"cannot create operator {t.name!r}: {type(exc).__name__}: {exc}"
                    ) from exc
                op.setup(
                    OperatorContext(
                        job_name=run.job_name,
                        operator_name=t.name,
                        uid=plan.uids[t],
                        subtask_index=s,
                        parallelism=chain.parallelism,
                        max_parallelism=run.max_parallelism,
                        config=config,
                        post_control=task.post_control,
                        processing_time=task.processing_time,
                        attempt=run.attempt,
                        run_id=run.run_id,
                        checkpointing=run.checkpointing,
                        highest_parallelism=max(
                            chain.parallelism,
                            run.highest_parallelism.get(plan.uids[t], 0),
                        ),
                        turn=task.turn,
                    )
                )
                ops.append(op)
                operators.setdefault(t, []).append(op)
            task.uids = [plan.uids[t] for t in chain.members]
            if restore is not None:
                if s == 0 and not restore.allow_non_restored_state:
                    for uid, op in zip(task.uids, ops):
                        _check_restores_into(restore.checkpoint, uid, op)
                task.restore_views = [
                    RestoreView(restore.checkpoint, uid, s, chain.parallelism, restore.serializer)
                    for uid in task.uids
                ]
            tasks[(ci, s)] = task

    # Wiring: every edge either chains two operators or gets a writer per sender.
    for edge in plan.edges:
        up, down = edge.upstream, edge.downstream
        up_ops = operators[up]
        for s, up_op in enumerate(up_ops):
            out = up_op.output if edge.input.tag is None else up_op.side_output(edge.input.tag)
            if edge.chained:
                target = operators[down][s]
                spec = edge.input.partition
                if edge.kind is Partitioning.HASH and not target.keyed and spec is not None:
                    assert spec.key_selector is not None
                    check = KeySelectorCheck(spec.key_selector, down.name)
                    check.output.operators.append(target)
                    check.output.seal()
                    target = check
                out.operators.append(target)
                continue
            down_chain = plan.chain_of[down]
            dci = chain_index[id(down_chain)]
            index_of_edge = plan.inputs_of(down).index(edge)
            base = channel_base[(down, index_of_edge)]
            if edge.kind is Partitioning.FORWARD:
                channels = [Channel(tasks[(dci, s)].mailbox, base)]
            else:
                # GLOBAL sends data to the first channel only, but watermarks and
                # end-of-input to all of them, like every other partitioning.
                channels = [
                    Channel(tasks[(dci, r)].mailbox, base + s)
                    for r in range(down_chain.parallelism)
                ]
            spec = edge.input.partition or PartitionSpec(edge.kind)
            if spec.kind is not edge.kind:
                spec = PartitionSpec(edge.kind, spec.key_selector)
            writer = RecordWriter(
                channels,
                spec,
                batch_size=config.batch_size,
                sender_index=s,
                max_parallelism=run.max_parallelism,
                operator_name=(
                    key_by_name(down.name) if edge.kind is Partitioning.HASH else up.name
                ),
            )
            out.writers.append(writer)
            tasks[(chain_index[id(plan.chain_of[up])], s)].writers.append(writer)

    # Input handlers of chain heads, per channel.
    for chain in plan.chains:
        ci = chain_index[id(chain)]
        in_edges = plan.inputs_of(chain.head)
        for s in range(chain.parallelism):
            task = tasks[(ci, s)]
            head = task.head
            handlers: list[BatchHandler] = []
            for edge in in_edges:
                handler = head.process_batch
                if edge.input.input_index == 1:
                    handler = head.process_batch2  # type: ignore[attr-defined]
                handlers.extend([handler] * _channels_per_receiver(plan, edge))
            task.channel_handlers = handlers

    for ops in operators.values():
        for op in ops:
            op.output.seal()
            for side in op.side_outputs.values():
                side.seal()
    return list(tasks.values()), operators


def _check_restores_into(checkpoint: CompletedCheckpoint, uid: str, op: StreamOperator) -> None:
    """Refuse a snapshot whose state of ``uid`` the operator now there would drop
    (another kind of operator took the uid)."""
    meta = checkpoint.operators().get(uid)
    if not meta:
        return
    keyed = "keyed" in meta or "rocksdb" in meta
    if keyed and not isinstance(op, KeyedOperator):
        lost = "keyed state"
    elif type(op).initialize_state is StreamOperator.initialize_state:
        lost = "operator state"
    else:
        return
    raise IncompatibleSnapshotError(
        f"operator {uid!r} in the {checkpoint.kind} {checkpoint.directory} has "
        f"{lost}, but the operator with that uid now ({type(op).__name__}) cannot take it "
        "back: give the operators their old uid(), or pass allow_non_restored_state=True "
        "to drop that state"
    )
