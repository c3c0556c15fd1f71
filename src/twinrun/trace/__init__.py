"""The per-step record of a run and what the tracers share.

- `format`: the trace file (writer, incremental reader, records), see its docstring;
- `steps`: step records read back, packed into arrays (`StepTable`);
- `lockstep`: the replica's side of lockstep comparison with the launcher;
- `probe`: layer probes for localisation reruns;
- `recording`: process facts and the snapshot schedule every tracer uses.

The framework tracers live with their framework: `twinrun.keras.Trace` (a callback) and
`twinrun.torch.Tracer`.
"""

from twinrun.trace.format import FORMAT, Trace, TraceReader, TraceWriter, read_trace

__all__ = ["FORMAT", "Trace", "TraceReader", "TraceWriter", "read_trace"]
