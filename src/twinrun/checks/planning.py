"""How a check's replicas run: their options checked, then side by side in lockstep or a few
at a time (`plan_replicas`), and what the verdict says about it.
"""

from dataclasses import dataclass

from twinrun.errors import TwinrunError


HASH_SEED_MODES = ("fixed", "random")


def validate_replicas(n, threads, minimum=2):
    if not isinstance(n, int) or n < minimum:
        if minimum == 1:
            raise TwinrunError(f"Expected -n to be at least 1. Received: n={n!r}.")
        raise TwinrunError(f"Expected -n to be at least 2 (two replicas to compare). Received: n={n!r}.")
    if threads is not None:
        if len(threads) not in (1, n):
            raise TwinrunError(
                f"Expected --threads to give one value, or one per replica ({n}). "
                f"Received: {len(threads)} values.")
        if any(t < 1 for t in threads):
            raise TwinrunError(f"Expected every --threads value to be at least 1. Received: {threads}.")
        if len(threads) == 1:
            threads = threads * n
    return threads


def per_replica(option, values, n):
    if values is None:
        return None
    if len(values) not in (1, n):
        raise TwinrunError(f"Expected {option} to give one value, or one per replica ({n}). "
                           f"Received: {len(values)} values.")
    return list(values) * n if len(values) == 1 else list(values)


def validate_hash_seed(mode):
    if mode not in HASH_SEED_MODES:
        raise TwinrunError(f"Expected --hash-seed to be one of {', '.join(HASH_SEED_MODES)}. "
                           f"Received: {mode!r}.")


@dataclass
class ReplicaPlan:
    """How the replicas of a check run (`plan_replicas`)."""

    parallel: int   # replicas running at a time
    lockstep: bool  # compared step by step, all stopped at the first difference
    threads: list   # each replica's thread count (all the CPUs where not pinned)
    pinned: bool    # whether the thread counts were given (else the framework's default)
    cpus: int       # CPUs this process may use
    concurrent_steps: int | None = None  # lockstep: replicas computing a step at once (None: all)

    @property
    def shared_cores(self):
        """True when the replicas running at once have more threads than there are CPUs."""
        return sum(sorted(self.threads)[-self.parallel:]) > self.cpus


def plan_replicas(n, threads, parallel=None, lockstep=None):
    """Decide how `n` replicas run: all side by side in lockstep, or `parallel` at a time.

    The rule (`twinrun check --help` says it too):
    - By default all `n` start at once and are compared in lockstep: no replica takes step s+1
      before every replica's step s has been compared, so a divergence stops them all within
      a step of where it happened, after start-up, not after `n` trainings.
    - Thread counts are never lowered to make the replicas fit the CPUs: the count changes the
      bits, so the verdict must be about the count a run really uses. When `n` x threads is
      more than the CPUs, the replicas take turns instead of fighting over the cores: only
      as many compute a step at once as fit (CPUs // threads, at least one; with one they
      alternate step by step), the others wait at a step already written. Side by side, the
      threads of both spin for the cores and the system time doubles; taking turns costs a
      hand-over per step, and still stops every replica within a step of a divergence.
    - `lockstep=False`, or a `parallel` below `n`: `parallel` at a time (default: as many as
      fit, CPUs // threads), each training to its end, so the verdict shows how the
      difference grew over the whole run. The traces are still compared as they grow.

    Arguments:
        n: number of replicas.
        threads: one thread count per replica (None: not pinned, i.e. all the CPUs).
        parallel: replicas at a time, or None for the rule above.
        lockstep: True, False, or None for the rule above.

    Returns a `ReplicaPlan`.

    Example:
    >>> plan = plan_replicas(2, [2, 2])
    >>> plan.lockstep, plan.parallel
    (True, 2)
    >>> plan_replicas(3, [1, 1, 1], parallel=1).lockstep
    False
    >>> plan_replicas(2, [512, 512]).concurrent_steps  # more threads than CPUs: take turns
    1
    """
    from twinrun.launch import available_cpus

    cpus = available_cpus()
    pinned = all(t is not None for t in threads)
    threads = [t or cpus for t in threads]
    per_replica = max(threads)
    if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int)
                                 or parallel < 1):
        raise TwinrunError(f"Expected --jobs to be at least 1. Received: {parallel!r}.")
    if lockstep is None:
        lockstep = parallel is None or parallel >= n
    if lockstep:
        if parallel is not None and parallel < n:
            raise TwinrunError(
                f"Lockstep runs every replica at once, so --jobs {parallel} cannot hold "
                f"for -n {n}; drop --jobs, or pass --no-lockstep to run {parallel} at a "
                f"time.")
        fits = max(1, cpus // per_replica)
        return ReplicaPlan(parallel=n, lockstep=True, threads=threads, pinned=pinned, cpus=cpus,
                           concurrent_steps=fits if fits < n and sum(threads) > cpus else None)
    fits = max(1, min(n, cpus // per_replica))
    return ReplicaPlan(parallel=min(n, parallel or fits), lockstep=False, threads=threads,
                       pinned=pinned, cpus=cpus)


def plan_note(plan, stopped):
    """What the verdict says about how the replicas ran."""
    n = len(plan.threads)
    if not plan.lockstep:
        return (f"The replicas ran {plan.parallel} at a time, each to its end, compared as "
                f"they went.")
    shared = "at once" if plan.concurrent_steps is not None else "side by side"
    note = f"The {n} replicas ran {shared}, compared in lockstep"
    if plan.concurrent_steps is not None:
        threads = (f"{' + '.join(map(str, plan.threads))} threads" if plan.pinned
                   else f"{n} x {max(plan.threads)} threads (the framework's default)")
        turns = ("taking turns step by step" if plan.concurrent_steps == 1
                 else f"{plan.concurrent_steps} computing a step at a time")
        note += (f", {turns}: {threads} would not fit {plan.cpus} CPUs at once (thread counts "
                 f"are kept as asked, since they change the bits)")
    elif plan.shared_cores and plan.pinned:
        note += (f"; with {' + '.join(map(str, plan.threads))} threads on {plan.cpus} CPUs "
                 f"they shared the cores (thread counts are kept as asked, since they change "
                 f"the bits)")
    elif plan.shared_cores:
        note += (f"; each free to use all {plan.cpus} CPUs, they shared the cores (thread "
                 f"counts are left at the framework's default, since they change the bits)")
    note += "."
    if stopped:
        note += (" Lockstep stopped them at the divergence; pass --no-lockstep to train every "
                 "replica to its end and see how the difference grows.")
    return note
