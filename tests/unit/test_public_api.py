import dunebugger_updater


def test_public_names_are_exactly_the_intended_ones():
    assert sorted(dunebugger_updater.__all__) == [
        "ComponentSpec", "ComponentStatus", "ComponentUpdater", "Settings", "UpdaterError", "load_settings",
    ]
    for name in dunebugger_updater.__all__:
        assert getattr(dunebugger_updater, name)
