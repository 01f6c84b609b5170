"""Loads the real weft-ffi library through its generated Python bindings."""
import os
import sys
import tempfile

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402


def main() -> None:
    assert weft_ffi.weft_version()
    key = bytes(range(32))
    with tempfile.TemporaryDirectory() as home:
        alice = weft_ffi.WeftAccount.create(home + "/alice", key, "alice")
        ident = alice.identity()
        assert ident.name == "alice"
        assert ident.link.startswith("weft://contact/")
        assert len(ident.fingerprint.split(" ")) == 6
        assert len(ident.qr_text.splitlines()) > 20

        parsed = weft_ffi.parse_contact_link(ident.link)
        assert parsed.account == ident.account
        assert parsed.name == "alice"

        del alice
        again = weft_ffi.WeftAccount.open(home + "/alice", key)
        assert again.identity().link == ident.link
        del again  # one open account per home at a time

        try:
            weft_ffi.WeftAccount.open(home + "/alice", bytes(32))
            raise AssertionError("a wrong key must be refused")
        except weft_ffi.WeftError.WrongKey:
            pass
        try:
            weft_ffi.parse_contact_link(ident.link[:-3])
            raise AssertionError("a cut link must be refused")
        except weft_ffi.WeftError.InvalidInput as e:
            assert "link" in str(e) or "checksum" in str(e) or "truncated" in str(e), e
        try:
            weft_ffi.WeftAccount.create(home + "/bob", b"short", None)
            raise AssertionError("a short key must be refused")
        except weft_ffi.WeftError.InvalidInput:
            pass
    print("python bindings: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
