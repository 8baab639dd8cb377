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
SECTIONS = ["summary", "judge-distribution", "rewards", "training", "refine", "samples"]
EVIL = "<script>alert('x')</script> & <b>bold</b>"


def _summary(judge: float, unsafe: float, kl: float, own: float | None) -> dict:
    return {"judge_mean": judge, "unsafe_fraction": unsafe, "own_reward_mean": own, "kl_mean": kl,
            "length_mean": 10.0, "rewards_mean": {"ours_50": own if own is not None else 0.1},
            "judge_threshold": -0.25}


def test_mean_and_std_over_seeds():
    assert mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))  # sample std: sqrt(((1-2)^2 + (3-2)^2) / 1)
    mean, std = mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)
    table = aggregate({"sft": [_summary(0.0, 0.5, 0.0, None), _summary(1.0, 0.25, 0.0, None)]})
    row = table.iloc[0]
    assert row["judge_mean_mean"] == 0.5 and row["judge_mean_std"] == pytest.approx(math.sqrt(0.5))
    assert row["unsafe_fraction_mean"] == 0.375 and math.isnan(row["own_reward_mean_mean"])


@pytest.fixture
def report_dir(tmp_path) -> Path:
    """A report built from synthetic evaluations: two variants x two seeds, one answer holding HTML."""
    config = load_config(AlignConfig, None, ["--output_dir", str(tmp_path / "run"), "--variants", "[sft, ours_50]",
                                             "--ppo.num_seeds", "2", "--ppo.reward_models", "{ours_50: /x}",
                                             "--evaluate.judge", "/judge"])
    rng = np.random.default_rng(0)
    loaded = {}
    for variant, shift in (("sft", 0.0), ("ours_50", 0.5)):
        loaded[variant] = []
        for seed in (0, 1):
            rows = [{"id": f"eval-{i}", "source": "simple_safety_tests", "prompt": f"prompt {i} {EVIL}",
                     "response": f"answer {i} {EVIL}", "response_tokens": 5, "ended": True, "kl": shift,
                     "rewards": {"ours_50": float(x)}, "own_reward": None if variant == "sft" else float(x),
                     "judge": float(x), "judge_unsafe": bool(x < -0.25)}
                    for i, x in enumerate(rng.normal(shift, 1.0, 30))]
            judge = np.array([r["judge"] for r in rows])
            loaded[variant].append((seed, _summary(judge.mean(), float((judge < -0.25).mean()), shift,
                                                   None if variant == "sft" else judge.mean()), rows))
    out = tmp_path / "report"
    out.mkdir()
    build_report(config, out, loaded)
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
