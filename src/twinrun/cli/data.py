"""`twinrun data ...`: obtain and verify Fashion-MNIST."""
