"""JAX twin of the shared probe: a float32 matmul and 20 steps of a tiny CNN (plain JAX, Adam)."""
import hashlib, json, os, sys
import numpy as np
def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays: h.update(np.asarray(a).tobytes())
    return h.hexdigest()[:16]
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 28, 28, 1)).astype("float32"); y = rng.integers(0, 10, 64)
a = rng.standard_normal((512, 4608)).astype("float32"); b = rng.standard_normal((4608, 256)).astype("float32")
import jax, jax.numpy as jnp
mm = jnp.dot(a, b)
k = jax.random.split(jax.random.PRNGKey(0), 3)
params = {"conv": jax.random.normal(k[0], (3, 3, 1, 32)) * 0.3, "cb": jnp.zeros(32),
          "w1": jax.random.normal(k[1], (32 * 13 * 13, 128)) * 0.01, "b1": jnp.zeros(128),
          "w2": jax.random.normal(k[2], (128, 10)) * 0.1, "b2": jnp.zeros(10)}
def loss(p, x, y):
    h = jax.lax.conv_general_dilated(x, p["conv"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["cb"]
    h = jax.nn.relu(h)
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ p["w1"] + p["b1"])
    logits = h @ p["w2"] + p["b2"]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(64), y])
@jax.jit
def step(p, m, v, t, x, y):
    g = jax.grad(loss)(p, x, y)
    m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
    v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
    p = jax.tree.map(lambda p, m, v: p - 1e-3 * (m / (1 - 0.9 ** t)) / (jnp.sqrt(v / (1 - 0.999 ** t)) + 1e-8), p, m, v)
    return p, m, v
m = jax.tree.map(jnp.zeros_like, params); v = jax.tree.map(jnp.zeros_like, params)
for t in range(1, 21):
    params, m, v = step(params, m, v, float(t), x, y)
keys = ("PJRT_NPROC", "XLA_FLAGS")
print(json.dumps({"fw": "jax", "version": jax.__version__, "settings": {k: os.environ.get(k) for k in keys if os.environ.get(k)},
                  "matmul": digest(mm), "trained": digest(*[params[k] for k in sorted(params)])}))
