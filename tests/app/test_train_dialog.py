"""The Trainer's dialog is generated from TrainParams: a field added to the class appears in it."""

from __future__ import annotations

from test_schema_surfaces import WarmupParams


async def test_a_new_field_appears_in_the_train_dialog(app_user, monkeypatch):
    from mcp_app.pages import trainer

    monkeypatch.setattr(trainer, "TrainParams", WarmupParams)
    await app_user.open("/trainer")
    await app_user.should_see("Train…", retries=3)
    app_user.find(marker="train").click()
    await app_user.should_see("Warm-up epochs")
    await app_user.should_see("Weights trained")  # the fine-tuning mode: one field
    app_user.find("Advanced").click()
    await app_user.should_see("LoRA rank")


async def test_the_train_dialog_picks_channels_by_the_open_image_s_names(app_user):
    await app_user.open("/trainer")
    await app_user.should_see("demo_01.tif (1/3)")
    app_user.find(marker="train").click()
    await app_user.should_see("Weights trained")
    app_user.find("Advanced").click()
    [picker] = app_user.find(marker="field-channels").elements
    assert picker.props.get("multiple") is not None or getattr(picker, "multiple", False)
    assert len(picker.options) == 2  # the demo's two channels, named
