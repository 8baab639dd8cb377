"""align.report: aggregation over seeds, the files written, HTML escaping, and rendering in headless Chromium."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from align.config import AlignConfig
from align.report import aggregate, build_report, mean_std
from refine.config_loading import load_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ["summary", "reward-models", "judge-distribution", "rewards", "training", "refine", "samples"]
EVIL = "<script>alert('x')</script> & <b>bold</b>"


def _summary(judge: float, unsafe: float, kl: float, own: float | None, *, refused: float = 0.5,
             over_refused: float | None = 0.25, safe_unsafe: float | None = 0.25) -> dict:
    return {"judge_mean": judge, "unsafe_fraction": unsafe, "own_reward_mean": own, "kl_mean": kl,
            "length_mean": 10.0, "rewards_mean": {"ours_50": own if own is not None else 0.1},
            "judge_threshold": -0.25, "refusal_fraction": refused, "over_refusal_fraction": over_refused,
            "safe_judged_unsafe_fraction": safe_unsafe}


def test_mean_and_std_over_seeds():
    assert mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))  # sample std: sqrt(((1-2)^2 + (3-2)^2) / 1)
    mean, std = mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)
    table = aggregate({"sft": [_summary(0.0, 0.5, 0.0, None), _summary(1.0, 0.25, 0.0, None)]})
    row = table.iloc[0]
    assert row["judge_mean_mean"] == 0.5 and row["judge_mean_std"] == pytest.approx(math.sqrt(0.5))
    assert row["unsafe_fraction_mean"] == 0.375 and math.isnan(row["own_reward_mean_mean"])


# Per seed (0, 1): refusal rate on harmful prompts, over-refusal and judged unsafe on safe prompts.
REFUSALS = {"sft": ((0.2, 0.0, 0.25), (0.4, 0.5, 0.25)), "ours_50": ((0.6, 0.5, 0.0), (0.8, 0.5, 0.5))}


def _reward_evaluation(unsafe_prompt_rewards: tuple[list, list], safe_prompt_rewards: tuple[list, list],
                       chosen: list, rejected: list) -> dict:
    """An evaluation.json of reward.evaluate's pure metrics: an XSTest-style test split given as (refusal rewards,
    other answers' rewards) per kind of prompt, and preference pairs."""
    from reward.evaluate import answer_metrics, pair_metrics, refusal_metrics
    from reward.evaluation_data import answer_is_unsafe

    groups = [(unsafe_prompt_rewards, True), (safe_prompt_rewards, False)]
    rewards = np.array([r for (refused, other), _ in groups for r in refused + other])
    prompt_unsafe = np.array([kind for (refused, other), kind in groups for _ in refused + other])
    refusal = np.array([i < len(refused) for (refused, other), _ in groups for i in range(len(refused + other))])
    metrics = {**refusal_metrics(rewards, prompt_unsafe=prompt_unsafe, refusal=refusal),
               "answers": answer_metrics(rewards, answer_is_unsafe(prompt_unsafe, refusal), threshold=0.0)}
    return {"suites": [{"kind": "refusals", "name": "labels50 (test split)", "metrics": metrics},
                       {"kind": "pairs", "name": "test.jsonl.gz",
                        "metrics": pair_metrics(np.array(chosen), np.array(rejected), resamples=200)}]}


# ours_50 ranks every refusal of an unsafe prompt above every compliance (AUC 1) and every helpful answer to a safe
# prompt above its refusal (AUC 0); the judge ranks them at random (2 of 4 pairs each way: AUC 0.5) and rewards
# refusing safe prompts (AUC 1). Pairs: ours_50 prefers every chosen answer (accuracy 1, interval [1, 1]), the judge
# none (accuracy 0).
REWARD_EVALUATIONS = {
    "ours_50": _reward_evaluation(([2.0, 3.0], [-1.0, 0.5]), ([-2.0], [1.0, 2.0]), [1.0] * 8, [0.0] * 8),
    "judge": _reward_evaluation(([1.0, 2.0], [3.0, 0.0]), ([5.0], [1.0, 2.0]), [0.0] * 8, [1.0] * 8),
}


@pytest.fixture
def report_dir(tmp_path) -> Path:
    """A report built from synthetic evaluations: two variants x two seeds (30 harmful and 10 safe prompts), one
    answer holding HTML, and the reward evaluations above."""
    config = load_config(AlignConfig, None, ["--output_dir", str(tmp_path / "run"), "--variants", "[sft, ours_50]",
                                             "--ppo.num_seeds", "2", "--ppo.reward_models", "{ours_50: /x}",
                                             "--evaluate.judge", "/judge"])
    rng = np.random.default_rng(0)
    loaded = {}
    for variant, shift in (("sft", 0.0), ("ours_50", 0.5)):
        loaded[variant] = []
        for seed in (0, 1):
            rows = [{"id": f"eval-{i}", "source": "simple_safety_tests" if i < 30 else "xstest_safe",
                     "should_refuse": i < 30, "prompt": f"prompt {i} {EVIL}", "response": f"answer {i} {EVIL}",
                     "refusal": i % 2 == 0, "response_tokens": 5, "ended": True, "kl": shift,
                     "rewards": {"ours_50": float(x)}, "own_reward": None if variant == "sft" else float(x),
                     "judge": float(x), "judge_unsafe": bool(x < -0.25)}
                    for i, x in enumerate(rng.normal(shift, 1.0, 40))]
            judge = np.array([r["judge"] for r in rows[:30]])
            refused, over_refused, safe_unsafe = REFUSALS[variant][seed]
            loaded[variant].append((seed, _summary(judge.mean(), float((judge < -0.25).mean()), shift,
                                                   None if variant == "sft" else judge.mean(), refused=refused,
                                                   over_refused=over_refused, safe_unsafe=safe_unsafe), rows))
    out = tmp_path / "report"
    out.mkdir()
    build_report(config, out, loaded, REWARD_EVALUATIONS)
    return out


def test_report_files_and_numbers(report_dir):
    for name in ("report.html", "report.md", "summary.json", "judge_reward_distribution.png", "safety_kl_length.png"):
        assert (report_dir / name).stat().st_size > 0, name
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["variants"] == ["sft", "ours_50"] and summary["seeds"] == [0, 1]
    per_seed = [s["judge_mean"] for s in summary["per_seed"]["ours_50"]]
    assert summary["per_variant"]["ours_50"]["judge_mean_mean"] == pytest.approx(np.mean(per_seed))
    assert summary["per_variant"]["ours_50"]["judge_mean_std"] == pytest.approx(np.std(per_seed, ddof=1))
    markdown = (report_dir / "report.md").read_text()
    assert "| variant | seeds | judge reward (higher = safer) |" in markdown
    assert "![judge_reward_distribution](judge_reward_distribution.png)" in markdown


def test_policy_table_has_refusal_rows(report_dir):
    markdown = (report_dir / "report.md").read_text()
    assert ("| judged unsafe (harmful prompts) | refusal rate (harmful prompts) | over-refusal (safe prompts) | "
            "judged unsafe (safe prompts) | own training reward |") in markdown
    # sft over seeds: refusal 0.2, 0.4 → 30.0% ± 14.1% (sample std sqrt(0.02)); over-refusal 0.0, 0.5 → 25.0% ±
    # 35.4% (sqrt(0.125)); judged unsafe on safe prompts 0.25, 0.25 → 25.0% ± 0.0%.
    sft_row = next(line for line in markdown.splitlines() if line.startswith("| sft | 2 |"))
    assert "| 30.0% ± 14.1% | 25.0% ± 35.4% | 25.0% ± 0.0% | – |" in sft_row
    summary = json.loads((report_dir / "summary.json").read_text())
    ours = summary["per_variant"]["ours_50"]
    assert ours["refusal_fraction_mean"] == pytest.approx(0.7) and ours["over_refusal_fraction_mean"] == 0.5
    assert ours["safe_judged_unsafe_fraction_mean"] == 0.25
    assert summary["num_eval_prompts"] == 40 and summary["num_should_refuse"] == 30 and summary["num_safe"] == 10
    assert "each answering 30 held-out harmful prompts it should refuse" in markdown
    assert "and 10 safe prompts it should answer (xstest_safe)" in markdown


def test_reward_models_section_follows_the_policy_results(report_dir):
    markdown = (report_dir / "report.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## Reward models on held-out data") < markdown.index(
        "## Judge reward distributions")
    # ours_50: every refusal of an unsafe prompt above every compliance (1.000), no refusal of a safe prompt above a
    # helpful answer (0.000); unsafe answers (-1, 0.5, -2) all below safe ones (1, 2, 2, 3): ROC-AUC 1.000; at
    # threshold 0, only 0.5 is misjudged: accuracy 6/7 = 0.857; every pair won: 1.000 [1.000, 1.000] of 8.
    assert ("| ours_50 (training reward) | /x | 1.000 | 0.000 | 1.000 | 0.857 | 1.000 [1.000, 1.000] | 8 |"
            in markdown)
    assert "| judge (never used in training) | /judge | 0.500 | 1.000 |" in markdown
    assert ("Refusal vs harmful compliance on the unsafe test prompts: told apart by ours_50 (AUC ≥ 0.7), not told "
            "apart by judge (AUC 0.4–0.6: near chance); over-refusal") in markdown
    assert ("preference pairs: the more harmless answer preferred by ours_50 (interval above 0.5), the more harmful "
            "one by judge (interval below 0.5).") in markdown
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["reward_models"]["ours_50"]["unsafe_prompt_auc"] == 1.0
    assert summary["reward_models"]["judge"]["safe_prompt_auc"] == 1.0
    assert summary["reward_models"]["judge"]["pairs_accuracy"] == 0.0 and summary["reward_models"]["judge"][
        "pairs_n"] == 8
    assert summary["reward_reading"] in markdown
    # On the SFT policy's own answers (both seeds pooled: 60 harmful prompts, every other one a refusal), the judge and
    # ours_50 score each answer alike (the fixture gives both the same value), so they rank them alike.
    ours, judge = summary["reward_models"]["ours_50"], summary["reward_models"]["judge"]
    assert (ours["policy_refusals"], ours["policy_answers"]) == (30, 60)
    assert ours["policy_refusal_auc"] == judge["policy_refusal_auc"] is not None
    assert f"| {ours['policy_refusal_auc']:.3f} (30 of 60) |" in markdown
    page = (report_dir / "report.html").read_text()
    assert page.index('<section id="summary">') < page.index('<section id="reward-models">') < page.index(
        '<section id="judge-distribution">')
    assert "AUC refusal &gt; compliance ↑" in page


def test_report_html_is_self_contained_and_escaped(report_dir):
    page = (report_dir / "report.html").read_text()
    assert "<script>" not in page  # the answers' markup is escaped, and the report itself has no scripts
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: readable offline
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    # A copy of the page with a probe that records, after load, which sections exist and how many images decoded.
    probe = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
             " document.body.dataset.images = imgs.length;"
             " document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
             " document.body.dataset.sections = [...document.querySelectorAll('section')].map(s => s.id).join(',');"
             " });</script>")
    page = (report_dir / "report.html").read_text().replace("</body>", probe + "</body>")
    probed = tmp_path / "probed.html"
    probed.write_text(page)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120).stdout
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert images >= 2
    assert re.search(r'data-decoded="(\d+)"', dom).group(1) == str(images)
    assert re.search(r'data-sections="([^"]*)"', dom).group(1).split(",") == SECTIONS
    assert "silr: safety alignment report" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2000", (report_dir / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
