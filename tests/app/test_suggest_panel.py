"""The Trainer's "label this next" list: runs the suggest command with the picked model, opens a suggestion."""

from __future__ import annotations

import json
import sys

from mcp_app import suggest_panel


async def test_suggestions_are_listed_and_open_their_frame(app_user, demo, tmp_path, monkeypatch):
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    (models / "nuclei.pth").write_bytes(b"")
    (models / "nuclei.json").write_text("{}")
    ranked = [{"rank": 1, "image": str(demo / "demo_03.tif"), "frame": "", "doubt": 0.8},
              {"rank": 2, "image": str(demo / "demo_02.tif"), "frame": "", "doubt": 0.3}]
    seen = []

    def fake(folder, model_path, n):  # the real ranking is tested in tests/test_suggest.py
        seen.append((folder, model_path, n))
        return [sys.executable, "-c", f"print({json.dumps(json.dumps(ranked))})"]

    monkeypatch.setattr(suggest_panel, "suggest_command", fake)
    await app_user.open("/trainer")
    await app_user.should_see("demo_01.tif (1/3)")
    app_user.find(marker="suggest").click()
    await app_user.should_see("1. demo_03.tif (doubt 0.80)")
    assert seen == [(demo, str(models / "nuclei.pth"), 10)]
    app_user.find(marker="suggestion-1").click()
    await app_user.should_see("demo_03.tif (3/3)")
