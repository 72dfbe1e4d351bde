"""Search-space machinery: genotypes, mixed ops, the supernet and the architecture step (spec §4, §8)."""
