"""Built-in workloads: the Fashion-MNIST data, the seed CNN and the answer's experiment."""
