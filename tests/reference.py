"""The reference counts of ../shared/FAT_ARCHITECTURE.md (fvcore, batch 1, eval mode)."""

OPS = ("conv", "matmul", "batch_norm", "group_norm", "linear", "adaptive_avg_pool2d")

# name, res, params, fvcore total, then per operator in OPS order
REFERENCE = [
    ("fat_b0", 224, 4494488, 764643456, 701002624, 52860416, 4553472, 5958400, 256000, 12544),
    ("fat_b1", 224, 7819720, 1257683232, 1173031776, 70070784, 6181056, 7996800, 384000, 18816),
    ("fat_b2", 224, 13466728, 2150371712, 2037503104, 93427712, 8241408, 10662400, 512000, 25088),
    ("fat_b3", 224, 29196264, 4672123392, 4424745472, 206524416, 18113536, 22202880, 512000, 25088),
    ("fat_b0", 64, 4494488, 58692096, 57224704, 352256, 371712, 486400, 256000, 1024),
    ("fat_b2", 64, 13466728, 169006592, 166326784, 622592, 672768, 870400, 512000, 2048),
]


def reference_ops(row: tuple) -> dict[str, int]:
    return dict(zip(OPS, row[4:]))
