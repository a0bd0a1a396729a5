"""A large image's labels are autosaved after a longer pause in the editing (their save takes seconds)."""

from mcp_app.workspace import AUTOSAVE_DELAY_S, AUTOSAVE_MAX_S, autosave_delay


def test_delay_grows_with_the_image_up_to_a_limit():
    assert autosave_delay((512, 512)) == autosave_delay((2048, 2048)) == AUTOSAVE_DELAY_S
    assert autosave_delay((4096, 4096)) == 4 * AUTOSAVE_DELAY_S
    assert autosave_delay((8192, 8192)) == min(AUTOSAVE_MAX_S, 16 * AUTOSAVE_DELAY_S)
    assert autosave_delay((20000, 20000)) == AUTOSAVE_MAX_S
