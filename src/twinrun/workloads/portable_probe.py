"""The portable self-test's workload: 20 Adam steps of a tiny CNN on fixed random data (torch).

It is the cross-CPU probe of docs/portable.md, step for step: under twinrun's portable
settings (`twinrun.determinism.torch.PORTABLE_VARIABLES`) an AVX2-only AMD EPYC (Zen 3) and an
AVX-512 one (Zen 5) both end at `EXPECTED["trained"]`, at 1 and at 2 threads. Any change here
(the data, the model, the order of a single call) changes those bits, so nothing is tidied.
`twinrun doctor --portable` runs it in fresh processes and compares with the literals.
"""

import hashlib

import numpy as np

STEPS = 20
PARAMETERS = ("0.weight", "0.bias", "4.weight", "4.bias", "6.weight", "6.bias")

# torch 2.13.0+cpu under the portable settings. `matmul` and `trained` were agreed by two CPU
# models (AMD EPYC family 25 model 1, AVX2 only; family 26 model 2, AVX-512), each at 1 and 2
# threads; `steps` (each parameter's digest after each step, to say where bits part) was taken
# on the second and ends in the same `trained`.
STEP_DIGESTS = [
    ["435986f5", "f220ddc8", "47bcf298", "6161ae65", "cf43ad93", "ace34f66"],
    ["c4eba0a8", "2ee002f2", "fc41e14c", "413c9206", "f94c3f34", "fd62dd90"],
    ["89d62c15", "a4a5a886", "e78db0f0", "d4c88675", "ca33aa2d", "bb88725d"],
    ["c76d53ac", "f1e4f4c2", "a2b1df0e", "b745793a", "593492c3", "4de1478c"],
    ["911e73a1", "c8993023", "3802837b", "905957fc", "b76030fb", "a5de3793"],
    ["f1b33ae6", "847c298b", "308d9d19", "272ed673", "c6d086b3", "227b49e0"],
    ["a0cbe863", "add689d0", "eaed3ae9", "4f41a456", "53770456", "9d29753b"],
    ["3f35f97b", "044b6c2f", "f0b7105a", "7f3070ff", "91a02415", "37d27484"],
    ["d4bc7e9e", "d8e79786", "1ad2c015", "95970857", "56f49216", "3353e3cd"],
    ["7f838304", "9dcd714e", "99d956f9", "3b5648a1", "5d5809e4", "8bcf6c47"],
    ["76307314", "376e7622", "e00cc208", "491762f2", "663a5738", "a1c6d863"],
    ["fab9f4e9", "1f59536b", "8ad3ef9d", "46e40e91", "5c687129", "0c0872a8"],
    ["7b7385ca", "371961b9", "08cb3eab", "f9a4b4ac", "2fd0bdec", "49d9a73d"],
    ["346b4be0", "ac89216c", "ba476dfa", "d80fba01", "a55b76e9", "4ac2ad34"],
    ["76ad35c2", "083c6490", "2ebcafda", "a141e0d7", "86b81513", "285a1699"],
    ["22ca75a4", "b48ca0d4", "8df66b9c", "b20681c1", "4dc5eac7", "fc8fd37a"],
    ["7a24fb8a", "6c2fcb22", "220033ff", "0a4460ae", "26ae3973", "37bf197d"],
    ["a9e8433f", "9d30c93f", "eff8fac4", "02b692d1", "403c5ec6", "41ecac3e"],
    ["5aead264", "6858d375", "ef5820ac", "64579083", "5ce10828", "3dc45b99"],
    ["d034fd3b", "b69430ea", "c0c81fc1", "142d9462", "a5bdc133", "b9955d92"],
]
EXPECTED = {
    "torch": "2.13.0+cpu",
    "matmul": "4be5631ff008890e",
    "trained": "9c313a4e8f4d4409",
    "steps": STEP_DIGESTS,
}


def digest(*arrays):
    """The probe's digest: SHA-256 of the arrays' bytes in order, first 16 hex digits."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def run(threads):
    """Train the probe at `threads` intra-op threads in this process; return its digests.

    Returns `{"torch", "cpu_capability", "threads", "matmul", "trained", "steps"}`, where
    `steps[i]` lists each of `PARAMETERS`' digests (8 hex digits) after step i.
    """
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    a = rng.standard_normal((512, 4608)).astype("float32")
    b = rng.standard_normal((4608, 256)).astype("float32")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(32 * 13 * 13, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(y)
    product = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
    steps = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(inputs), labels)
        loss.backward()
        optimizer.step()
        steps.append([digest(p.detach().numpy())[:8] for p in net.parameters()])
    weights = [p.detach().numpy() for p in net.parameters()]
    return {"torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "matmul": digest(product),
            "trained": digest(*weights), "steps": steps}


def first_difference(result):
    """Where `result` (from `run`) parts from the shipped bits: None when it does not, else
    `{"step": i, "tensor": name}` (step -1 and tensor "matmul" for the lone matrix product;
    step None when only the final digest differs)."""
    if result["matmul"] != EXPECTED["matmul"]:
        return {"step": -1, "tensor": "matmul"}
    for step, (got, want) in enumerate(zip(result["steps"], EXPECTED["steps"])):
        for name, a, b in zip(PARAMETERS, got, want):
            if a != b:
                return {"step": step, "tensor": name}
    if result["trained"] != EXPECTED["trained"]:
        return {"step": None, "tensor": None}
    return None
