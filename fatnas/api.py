"""The Python API: what the command line does, as calls (the CLI calls these); may import every layer.

    import fatnas
    model = fatnas.create_model("fat_b0", num_classes=10, in_chans=1)
    fatnas.cost("fat_b2").flops                        # fvcore-total FLOPs at 224 px, no module built
    done = fatnas.optimize(budget="2GFLOPs", trials=20)  # a whole search; done.run.pareto() is its front
    fatnas.confirm(done.run.id, "30m")                 # its band retrained: confirmed.csv beside its files
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .estimate.cost import Cost, analytic_cost, paper_comparison, parse_budget
from .model.config import FATConfig
from .model.space import load_space
from .model.variants import create_model, get_config, list_models, resolve_config
from .search.api import Search, new_search, optimize, resume_search, search_settings


def config_of(model: str | Path | FATConfig) -> FATConfig:
    """A config from a variant name, a CONFIG.yaml path or a config."""
    return model if isinstance(model, FATConfig) else resolve_config(str(model))


def cost(model: str | Path | FATConfig, res: int | tuple[int, int] = 224) -> Cost:
    """Params and fvcore-total FLOPs (by operator) of a variant, CONFIG.yaml or config, from the config alone."""
    return analytic_cost(config_of(model), res)


def measure(model: str | Path | FATConfig, *, res: int = 224, batch_size: int = 1, device: str = "cpu",
            threads: int | None = 1, warmup: int = 10, repeats: int = 30, channels_last: bool = False,
            runtime: str = "torch") -> dict[str, Any]:
    """Measured latency (median, p10, p90, CV of timed passes) and peak memory of one forward pass, as `cost
    --latency` prints them: keys latency, peak_memory_bytes, memory_method."""
    from .estimate.latency import measure_latency, peak_memory_bytes
    from .model.network import FAT

    cfg = config_of(model)
    network = FAT(cfg)
    stats = measure_latency(network, res=res, in_chans=cfg.in_chans, batch_size=batch_size, device=device,
                            threads=threads, warmup=warmup, repeats=repeats, channels_last=channels_last,
                            runtime=runtime)
    memory, how = peak_memory_bytes(network, res=res, in_chans=cfg.in_chans, batch_size=batch_size, device=device)
    return dict(latency=dict(stats.to_dict(), runtime=runtime), peak_memory_bytes=memory, memory_method=how)


def confirm(run_id: str, budget: str | None = None, *, resume: bool = False, **values: Any) -> Any:
    """Confirm a search's band as `fatnas confirm RUN` does, within `budget` ('30m', '12trainings'; None: 1 h, or
    on resume the recorded one); `values` are
    `ConfirmSettings`' (recipe, networks, min_seeds, max_seeds, workers, executor, ray_address, threads, device).
    Returns confirmed.csv as a table."""
    from .study.confirm import confirm_settings, prepare_confirm, run_confirm

    return run_confirm(prepare_confirm(run_id, confirm_settings(budget, **values), resume=resume))


__all__ = ["Search", "config_of", "confirm", "cost", "create_model", "get_config", "list_models", "load_space",
           "measure", "new_search", "optimize", "paper_comparison", "parse_budget", "resume_search", "search_settings"]
