"""Rich renderings for the terminal; plain text when the output is not a terminal."""

from rich.console import Console
from rich.table import Table


def console():
    return Console()


def render_run_result(result, out=None):
    """One finished run: its id, seed, epochs, test metrics and weights fingerprint."""
    out = out or console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("run", result.get("run_id") or "(not recorded)"),
        ("workload", f"{result['workload']} ({result['preset']}) on {result['backend']}"),
        ("seed", str(result["seed"])),
        ("determinism", "on" if result.get("determinism") else "off"),
        ("epochs trained", f"{result['epochs_trained']} (best val_loss {result['best_val_loss']:.5f} "
                           f"at epoch {result['best_epoch']})"),
        ("test accuracy", f"{result['test_accuracy']:.4f}"),
        ("test loss", f"{result['test_loss']:.5f}"),
        ("fingerprint", result["fingerprint"]),
        ("wall time", f"{result['wall_time']:.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    if result.get("impossible_controls"):
        out.print("[yellow]Not reproducible for sure:[/] could not fix "
                  + ", ".join(result["impossible_controls"]))
