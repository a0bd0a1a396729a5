"""In the desktop window (--native), Browse… opens the system's folder dialog (pywebview), simulated here."""

from __future__ import annotations

from nicegui import app

from mcp_core.synthetic import write_demo_project
from waiting import apoll


async def test_native_browse_opens_the_system_folder_dialog(app_user, state, tmp_path, monkeypatch):
    import webview

    picked = tmp_path / "picked"
    write_demo_project(picked, n_images=1, n_labelled=0, shape=(32, 32))
    calls = []

    class Window:  # what pywebview's window offers NiceGUI's native mode
        async def create_file_dialog(self, dialog_type, directory="", **kwargs):
            calls.append((dialog_type, directory))
            return (str(picked),)

    monkeypatch.setattr(app.native, "main_window", Window())
    await app_user.open("/")
    app_user.find(marker="browse").click()
    await apoll(lambda: state.folder == picked.resolve(), "the folder chosen in the system dialog to open")
    folder_dialog = webview.FileDialog.FOLDER if hasattr(webview, "FileDialog") else webview.FOLDER_DIALOG
    assert calls and calls[0][0] == folder_dialog
