"""What a Keras training's trace fingerprints, and the batch's own loss.

The training state is more than the model's weights: the optimizer's slots (Adam's first and
second moments) and its iteration counter decide the next update, and the random generators'
states decide the next dropout mask. A difference that starts there shows up in the weights
only a step later, so every step fingerprints all of it:

- the model's variables (`model.weights`: trainable ones and BatchNorm statistics), by path;
- `optimizer/<path>`: every variable of `model.optimizer.variables` (the iteration counter,
  the learning rate variable, one or two slots per trainable variable);
- `rng/<layer>/<generator>`: the state of every `SeedGenerator` a layer owns (Dropout and
  the other random layers), and `rng/keras_global` for Keras' global generator once something
  has used it.
"""

import keras

# Keras keeps its global generator in its global state under this name
# (keras/src/random/seed_generator.py); it exists only once an unseeded random op ran.
_GLOBAL_SEED_GENERATOR = "global_seed_generator"


def training_state(model):
    """Every tensor of the training state, as `(name, variable)` pairs in a stable order.

    Arguments:
        model: a compiled Keras 3 model.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5, name="dropout"),
        ...                           keras.layers.Dense(1, name="dense")], name="net")
        >>> model.compile(optimizer="adam", loss="mse")
        >>> model.optimizer.build(model.trainable_variables)  # as fit() does on its first step
        >>> [name for name, _ in training_state(model)][-3:]
        ['optimizer/adam/net_dense_bias_momentum', 'optimizer/adam/net_dense_bias_velocity',
         'rng/dropout/seed_generator']
    """
    state = [(v.path, v) for v in model.weights]
    seen = {id(v) for _, v in state}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        for variable in optimizer.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                state.append((f"optimizer/{variable.path}", variable))
    for layer in model._flatten_layers():
        # `_seed_generators` is where Keras' Layer tracks its generators (no public list).
        for generator in getattr(layer, "_seed_generators", []):
            if id(generator.state) not in seen:
                seen.add(id(generator.state))
                state.append((f"rng/{layer.name}/{generator.name}", generator.state))
    generator = _global_seed_generator()
    if generator is not None and id(generator.state) not in seen:
        state.append(("rng/keras_global", generator.state))
    return state


def _global_seed_generator():
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - a Keras without this private module
        return None
    return global_state.get_global_attribute(_GLOBAL_SEED_GENERATOR)


def build_optimizer(model):
    """Create the optimizer's slots now if Keras would create them only inside the first
    training step (TensorFlow without a distribution strategy), so that a fingerprint compiled
    before the first step can include them. Keras does the same before training on JAX and
    torch (`Trainer._symbolic_build`); the slots start at the same values either way."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and model.built and not optimizer.built:
        optimizer.build(model.trainable_variables)


def jax_state_index(model, variables):
    """Where each variable lives in Keras' JAX training state (`model._jax_state`): a
    `(group, index)` pair, or None for a variable outside it (Keras' global generator); None
    for the whole list on other backends."""
    if keras.backend.backend() != "jax":
        return None
    position = {}
    groups = ("trainable_variables", "non_trainable_variables", "metrics_variables")
    for group in groups:
        for i, variable in enumerate(getattr(model, group)):
            position.setdefault(id(variable), (group, i))
    optimizer = getattr(model, "optimizer", None)
    for i, variable in enumerate(optimizer.variables if optimizer is not None else []):
        position.setdefault(id(variable), ("optimizer_variables", i))
    return [position.get(id(v)) for v in variables]


def current_values(model, variables, index):
    """The variables' current values, fetched anew each step.

    Keras' JAX trainer keeps the training state outside the variables during `fit` (it empties
    them to save memory and donates each step's arrays to the next), so on JAX the values come
    from `model._jax_state`, without forcing a sync that would change how Keras runs.

    Arguments:
        model: the model being trained (not `Callback.model`, whose property syncs the JAX
            state back into the variables on every access).
        variables: Keras variables.
        index: `jax_state_index(model, variables)`.
    """
    state = getattr(model, "_jax_state", None)
    if index is not None and state and not getattr(model, "_jax_state_synced", True):
        return [v.value if where is None else state[where[0]][where[1]]
                for v, where in zip(variables, index)]
    return [v.value for v in variables]


class BatchLoss:
    """The loss of each training batch, kept exactly.

    Keras logs `loss` as the epoch's running mean (its loss tracker, a `Mean` metric), which
    cannot be turned back into the batch's loss exactly. Every backend's `train_step` hands the
    batch's loss to that tracker's `update_state`, so the tracker is given one more variable,
    and its `update_state` also stores the value there. Being one of the model's metric
    variables, it is part of the compiled step on TensorFlow and of the training state on JAX
    (read from `model._jax_state` without a sync). `detach()` takes both away again.

    The value is the loss the optimizer minimised (regularisation losses included), before
    loss scaling, cast to the tracker's dtype (exact unless the loss is wider than floatx).
    """

    def __init__(self, model, tracker, variable):
        self.model = model
        self.tracker = tracker
        self.variable = variable
        self.called = False

    @classmethod
    def attach(cls, model):
        """Wrap the model's loss tracker; None where there is none (a model not compiled)."""
        tracker = getattr(model, "_loss_tracker", None)
        if tracker is None:
            return None
        existing = getattr(tracker, "_twinrun_batch_loss", None)
        if existing is not None:
            return existing
        variable = tracker.add_variable(shape=(), initializer="zeros", dtype=tracker.dtype,
                                        name="twinrun_batch_loss")
        original = tracker.update_state

        batch_loss = cls(model, tracker, variable)

        def update_state(values, sample_weight=None):
            # Runs eagerly or while the step is traced, so `called` says whether the step
            # reports its loss at all (a custom `train_step` may not).
            batch_loss.called = True
            variable.assign(keras.ops.cast(values, variable.dtype))
            return original(values, sample_weight=sample_weight)

        object.__setattr__(tracker, "update_state", update_state)
        object.__setattr__(tracker, "_twinrun_batch_loss", batch_loss)
        model.train_function = None  # built again, with the wrapped tracker
        return batch_loss

    def detach(self):
        """Give the tracker its own `update_state` and variables back (a later save, evaluate
        or `fit` without a trace sees the model as it was)."""
        vars(self.tracker).pop("update_state", None)
        vars(self.tracker).pop("_twinrun_batch_loss", None)
        variables = self.tracker._variables
        for i, variable in enumerate(variables):
            if variable is self.variable:
                del variables[i]
                break
        self.tracker._tracker.stored_ids["variables"].discard(id(self.variable))
        self.model.train_function = None
