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
