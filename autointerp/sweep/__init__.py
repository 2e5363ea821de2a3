"""Layer sweep: which layers of two models correspond (raw-activation CKA / SVCCA / mutual kNN per layer pair)."""
