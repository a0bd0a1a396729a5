"""The model card page: reached from Home, shows the card of a user model from its sidecar."""

from __future__ import annotations

import json


async def test_model_card_page_shows_scores_and_annotation_versions(app_user, tmp_path):
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    (models / "nuclei.pth").write_bytes(b"")
    (models / "nuclei.json").write_text(json.dumps({
        "architecture": {"name": "tiny", "bsize": 128, "ps": 8}, "class_names": ["unassigned", "mitotic"],
        "class_colors": ["#808080", "#e6194b"], "metrics": {"ap50": 0.8125, "per_class": {
            "mitotic": {"precision": 0.75, "recall": 0.5, "f1": 0.6, "support": 4}}},
        "data": {"digest": "ab" * 32, "train": [{"file": "a.tif", "frame": "", "sha256": "c" * 64,
                                                  "annotation_version": 3}]}}))
    await app_user.open("/")
    await app_user.should_see("nuclei card")
    await app_user.open("/model/nuclei")
    await app_user.should_see(marker="model-card")
    card = app_user.find(marker="model-card").elements.pop()
    assert "| mitotic | 0.750 | 0.500 | 0.600 | 4 |" in card.content and "| train | a.tif |" in card.content
    await app_user.open("/model/missing")
    await app_user.should_see("There is no model called 'missing'.")


async def test_model_card_page_plots_the_recorded_training_curves(app_user, tmp_path):
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    for name, losses in (("curved", {"train": [1.5, 0.75, 0.5], "test": [1.25, None, 0.625]}), ("flat", {})):
        (models / f"{name}.pth").write_bytes(b"")
        (models / f"{name}.json").write_text(json.dumps({"architecture": {"name": "unet"}, "epochs_done": 3,
                                                          "losses": losses}))
    await app_user.open("/model/curved")
    await app_user.should_see("Training curves")
    chart = app_user.find(marker="loss-curves").elements.pop()
    series = {s["name"]: s["data"] for s in chart.options["series"]}
    assert series == {"train loss": [[1, 1.5], [2, 0.75], [3, 0.5]], "test loss": [[1, 1.25], [3, 0.625]]}  # unscored epochs left out
    await app_user.open("/model/flat")  # nothing recorded: no empty chart
    await app_user.should_see(marker="model-card")
    await app_user.should_not_see(marker="loss-curves")
    await app_user.should_not_see("Training curves")


async def test_export_button_runs_the_export_command(app_user, tmp_path, monkeypatch):
    import sys

    from mcp_app.pages import model_card

    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    (models / "nuclei.pth").write_bytes(b"")
    (models / "nuclei.json").write_text("{}")
    seen = []

    def fake(model_path, out):  # the real command is tested in tests/test_bioimageio.py
        seen.append((model_path, out))
        return [sys.executable, "-c", f"open({str(out)!r}, 'wb').write(b'PK')"]

    monkeypatch.setattr(model_card, "export_command", fake)
    await app_user.open("/model/nuclei")
    app_user.find(marker="export-bioimageio").click()
    await app_user.should_see("(validated and tested)")
    assert seen == [(str(models / "nuclei.pth"), models / "nuclei.bioimageio.zip")]
    assert (models / "nuclei.bioimageio.zip").read_bytes() == b"PK"


async def test_the_export_button_runs_the_real_export_model_command(tmp_path):
    """The button's command reaches ``export-model`` (a missing model: its own error, quickly; the full export and
    its validation are tested in tests/test_bioimageio.py)."""
    from mcp_app.pages import model_card

    ok, text = await model_card.export_package(str(tmp_path / "gone.pth"), tmp_path / "gone.zip")
    assert not ok and "There is no model named" in text and "gone.pth" in text
    assert not (tmp_path / "gone.zip").exists()
