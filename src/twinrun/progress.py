"""Training progress for a person: a Rich progress display on a terminal, plain lines elsewhere."""

import sys
import time


def progress_callback(epochs, steps_per_epoch, stream=None, enabled=True):
    """A Keras callback that shows epochs, steps, loss and ETA.

    Arguments:
        epochs: the most epochs the run may train.
        steps_per_epoch: training batches per epoch.
        stream: where to write (default stdout).
        enabled: False returns a callback that shows nothing (for `--json`).
    """
    import keras
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(file=stream or sys.stdout)

    class ShowProgress(keras.callbacks.Callback):
        # Safe to run off the training thread: it only reads the logs and updates Rich, which
        # is thread-safe. Without it Keras waits for every step's callbacks before the next
        # step, and a plain `fit` would be faster than `twinrun train`.
        async_safe = True

        def __init__(self):
            super().__init__()
            self.live = enabled and console.is_terminal
            self.progress = None
            self.started = None

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()
            if not self.live:
                return
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console, transient=True,
            )
            self.progress.start()
            self.epoch_task = self.progress.add_task("epochs", total=epochs, loss="")
            self.step_task = self.progress.add_task("steps", total=steps_per_epoch, loss="")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()
            if self.progress:
                self.progress.reset(self.step_task, total=steps_per_epoch, loss="")

        def on_train_batch_end(self, batch, logs=None):
            if self.progress:
                loss = (logs or {}).get("loss")
                text = f"loss {float(loss):.4f}" if loss is not None else ""
                self.progress.update(self.step_task, completed=batch + 1, loss=text)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.perf_counter() - self.epoch_started
            line = (f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f} "
                    f"acc {logs.get('accuracy', float('nan')):.4f} "
                    f"val_loss {logs.get('val_loss', float('nan')):.4f} "
                    f"val_acc {logs.get('val_accuracy', float('nan')):.4f} "
                    f"({seconds:.1f} s, {1000 * seconds / steps_per_epoch:.0f} ms/step)")
            if self.progress:
                self.progress.update(self.epoch_task, completed=epoch + 1)
                self.progress.console.print(line)
            elif enabled:
                print(line, file=console.file, flush=True)

        def on_train_end(self, logs=None):
            if self.progress:
                self.progress.stop()

    return ShowProgress()


def store_callback(store, run_id):
    """A Keras callback that records each epoch's metrics in the run store as it ends."""
    import keras

    class RecordEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            store.record_epoch(run_id, epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    return RecordEpochs()
