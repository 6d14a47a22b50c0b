"""Every stage that trains or encodes can come back from DVC's run-cache.

`dvc exp run` (and `dvc repro` after `dvc pull --run-cache`) restores a stage from `.dvc/cache/runs`
instead of running it when the same command, deps and params ran before. DVC saves a stage there only
if each output kept out of its cache (`cache: false`, git-tracked) is a metric or a plot, and none
persists (`dvc.stage.Stage.run`, `dvc.stage.cache._can_hash`). One plain git-tracked output is enough to
lose it: the fine-tune then ran again at every seed of an arm that changes only the reranker.
"""

from __future__ import annotations

from conftest import ROOT
from dvc.repo import Repo

# Both run in seconds. check_params's output persists so that a failed check deletes nothing; the
# report's markdown and page are git-tracked and neither metrics nor plots.
RE_RUN_ALWAYS = {"check_params", "report"}


def stages_the_run_cache_skips() -> set[str]:
    with Repo(str(ROOT)) as repo:
        return {stage.name.split("@")[0] for stage in repo.index.stages
                if any(out.persist or not (out.use_cache or out.is_metric or out.is_plot) for out in stage.outs)}


def test_only_the_quick_stages_are_left_out_of_the_run_cache() -> None:
    assert stages_the_run_cache_skips() == RE_RUN_ALWAYS
