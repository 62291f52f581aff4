"""The signed consent ledger, tampered with as a person at a text editor would: every edit to
voice.yaml or ledger.jsonl, a deleted file, a ledger from another folder, a swapped key is
refused by `sopreel build` with a message that names it, and nothing is built."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import STATEMENT, base_script, enrol_anna, speak, write_script
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flows.cli import main
from stages import ledger
from stages.voices import check_consent, load_voice, record_synthesis

ROOT = Path(__file__).resolve().parent.parent
NEW_STATEMENT = STATEMENT.replace("English and Chinese", "English, Chinese and Thai")


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture
def anna(tmp_path, recordings) -> Path:
    folder = tmp_path / "voices"
    enrol_anna(folder, recordings)
    return folder


def lines(voices: Path) -> list[str]:
    return (voices / "ledger.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)


def write_lines(voices: Path, kept: list[str]) -> None:
    (voices / "ledger.jsonl").write_text("".join(kept), encoding="utf-8")


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def sign_again(voices: Path, key: Ed25519PrivateKey, keep: Callable[[dict], bool]) -> None:
    """The ledger rewritten and signed with `key`: a forger's own, complete and consistent."""
    entries = [json.loads(line) for line in lines(voices)]
    out, prev = [], ledger.GENESIS_PREV
    for body in (e for e in entries if keep(e)):
        body = {k: v for k, v in body.items() if k != "sig"} | {"seq": len(out), "prev": prev}
        if body["event"] == "ledger":
            body["key"] = ledger.public_text(key.public_key())
        text = ledger._signed(body, key)
        out.append(text + "\n")
        prev = ledger.Entry.parse(text, len(out)).sha256
    write_lines(voices, out)


def revoke(voices: Path) -> None:
    code, output = cli("voices", "revoke", "anna", "--voices-dir", voices)
    assert code == 0, output


def undo_revocation_in_yaml(voices: Path, tmp_path: Path, recordings: dict) -> None:
    revoke(voices)
    edit_yaml(voices / "anna" / "voice.yaml",
              lambda d: d["consent"].update(revoked=None, revoked_reason=None))


def widen_in_yaml(voices: Path, tmp_path: Path, recordings: dict) -> None:
    edit_yaml(voices / "anna" / "voice.yaml",
              lambda d: d["consent"].update(languages=["en", "zh-TW", "th"],
                                            expires="2199-12-31"))


def edit_a_ledger_entry(voices: Path, tmp_path: Path, recordings: dict) -> None:
    kept = lines(voices)
    kept[2] = kept[2].replace('"languages":["en","zh-TW"]', '"languages":["en","th","zh-TW"]')
    write_lines(voices, kept)


def delete_the_revocation(voices: Path, tmp_path: Path, recordings: dict) -> None:
    revoke(voices)
    write_lines(voices, lines(voices)[:-1])


def delete_the_revocation_and_restore_voice_yaml(voices: Path, tmp_path: Path,
                                                 recordings: dict) -> None:
    before = (voices / "anna" / "voice.yaml").read_text(encoding="utf-8")
    revoke(voices)
    write_lines(voices, lines(voices)[:-1])
    (voices / "anna" / "voice.yaml").write_text(before, encoding="utf-8")


def delete_an_entry_in_the_middle(voices: Path, tmp_path: Path, recordings: dict) -> None:
    revoke(voices)
    kept = lines(voices)
    write_lines(voices, kept[:2] + kept[3:])


def reorder_entries(voices: Path, tmp_path: Path, recordings: dict) -> None:
    kept = lines(voices)
    write_lines(voices, [kept[0], kept[2], kept[1], *kept[3:]])


def copy_a_ledger_from_another_folder(voices: Path, tmp_path: Path, recordings: dict) -> None:
    other = tmp_path / "other-voices"
    enrol_anna(other, recordings)
    shutil.copy(other / "ledger.jsonl", voices / "ledger.jsonl")


def sign_the_ledger_with_another_key(voices: Path, tmp_path: Path, recordings: dict) -> None:
    sign_again(voices, Ed25519PrivateKey.generate(), lambda entry: True)


def swap_the_key_and_the_pin(voices: Path, tmp_path: Path, recordings: dict) -> None:
    revoke(voices)
    forged = Ed25519PrivateKey.generate()
    sign_again(voices, forged, lambda entry: entry["event"] != "revoke")
    edit_yaml(voices / "trust.yaml",
              lambda d: d.update(public_key=ledger.public_text(forged.public_key())))
    edit_yaml(voices / "anna" / "voice.yaml",
              lambda d: d["consent"].update(revoked=None, revoked_reason=None))


def delete_the_ledger(voices: Path, tmp_path: Path, recordings: dict) -> None:
    (voices / "ledger.jsonl").unlink()


def delete_trust_yaml(voices: Path, tmp_path: Path, recordings: dict) -> None:
    (voices / "trust.yaml").unlink()


def replace_the_reference_recording(voices: Path, tmp_path: Path, recordings: dict) -> None:
    shutil.copy(recordings["other"], voices / "anna" / "reference.wav")


TAMPERING = {
    undo_revocation_in_yaml: r"voice\.yaml disagrees with the signed consent ledger "
                             r"\(consent\.revoked is null, the ledger says \"\d{4}-\d\d-\d\d\"",
    widen_in_yaml: r"consent\.expires is \"2199-12-31\", the ledger says \"2099-12-31\"; "
                   r"consent\.languages is \[\"en\", \"zh-TW\", \"th\"\], the ledger says",
    edit_a_ledger_entry: r"ledger\.jsonl line 3: entry #2 \(consent of voice 'anna'\) is not "
                         r"signed by the organisation key pinned in trust\.yaml",
    delete_the_revocation: r"ledger\.jsonl now ends at entry #2: entries were removed from its "
                           r"end",
    delete_the_revocation_and_restore_voice_yaml: r"now ends at entry #2: entries were removed",
    delete_an_entry_in_the_middle: r"ledger\.jsonl line 3: entry #3 where #2 belongs: entries "
                                   r"were removed, reordered or inserted",
    reorder_entries: r"line 2: entry #2 where #1 belongs",
    copy_a_ledger_from_another_folder: r"it was copied from another voices folder",
    sign_the_ledger_with_another_key: r"line 1: entry #0 is not signed by the organisation key",
    swap_the_key_and_the_pin: r"entries were removed|holds another entry|is not the key",
    delete_the_ledger: r"ledger\.jsonl is missing: .*trust\.yaml says this folder keeps a "
                       r"consent ledger",
    delete_trust_yaml: r"ledger\.jsonl has no trust\.yaml beside it",
    replace_the_reference_recording: r"the reference recording .*reference\.wav has changed "
                                     r"since enrolment",
}


@pytest.mark.parametrize("tamper", list(TAMPERING), ids=lambda f: f.__name__)
def test_tampering_is_refused_and_nothing_is_built(tmp_path, anna, recordings, tamper):
    script = write_script(tmp_path, base_script(voice="anna"))
    tamper(anna, tmp_path, recordings)
    out = tmp_path / "out"
    code, output = cli("build", script, "--voices-dir", anna, "--out", out)
    assert code == 2, output
    assert re.search(TAMPERING[tamper], " ".join(output.split())), output
    assert not out.exists() or not any(out.rglob("*.*"))
    code, audit = cli("voices", "audit", "--voices-dir", anna)
    if tamper not in (undo_revocation_in_yaml, widen_in_yaml, replace_the_reference_recording):
        assert code == 2, audit   # the ledger itself no longer verifies


def test_the_ledger_records_enrolment_and_voice_yaml_cites_it(anna):
    entries = [json.loads(line) for line in lines(anna)]
    assert [e["event"] for e in entries] == ["ledger", "enrol", "consent"]
    assert [e["seq"] for e in entries] == [0, 1, 2]
    assert all(len(e["sig"]) == 88 and e["at"] and e["by"] for e in entries)
    assert "Anna" not in (anna / "ledger.jsonl").read_text()   # names only as hashes
    record = yaml.safe_load((anna / "anna" / "voice.yaml").read_text(encoding="utf-8"))
    trust = yaml.safe_load((anna / "trust.yaml").read_text(encoding="utf-8"))
    assert record["ledger"]["id"] == trust["ledger"] == entries[0]["ledger"]
    assert record["ledger"]["consent"]["entry"] == 2 == record["ledger"]["latest"]["entry"]
    key = Path(os.environ["SOPREEL_CONSENT_KEY"])
    assert key.stat().st_mode & 0o777 == 0o600
    assert trust["fingerprint"] == ledger.fingerprint(trust["public_key"])


def test_a_revocation_is_final_and_coming_back_needs_a_new_recording(tmp_path, anna,
                                                                     recordings):
    revoke(anna)
    code, output = cli("voices", "amend", "anna", "--expires", "2098-01-01",
                       "--voices-dir", anna)
    assert code == 2 and "a revocation is final" in output
    again = ["voices", "add", "anna", "--name", "Anna Chen", "--reference",
             recordings["reference"], "--statement", STATEMENT, "--languages", "en",
             "--expires", "2099-12-31", "--voices-dir", anna]
    code, output = cli(*again, "--consent", recordings["consent"])
    assert code == 2 and "needs a new consent recording" in output
    fresh = speak(tmp_path / "consent-again.wav", STATEMENT + " I agree again.")
    code, output = cli(*again, "--consent", fresh)
    assert code == 0, output
    code, shown = cli("voices", "show", "anna", "--voices-dir", anna)
    assert "revoked:      no" in shown and "in force" in shown
    code, audit = cli("voices", "audit", "anna", "--json", "--voices-dir", anna)
    history = [e["event"] for e in json.loads(audit)["voices"]["anna"]["history"]]
    assert history == ["enrol", "consent", "revoke", "enrol", "consent"]


def test_narrowing_is_recorded_and_widening_needs_new_consent(tmp_path, anna):
    code, output = cli("voices", "amend", "anna", "--languages", "en", "--voices-dir", anna)
    assert code == 0, output
    script = write_script(tmp_path, base_script(voice="anna", languages=["en", "zh-TW"],
                                                translations={"zh-TW": ZH}))
    code, output = cli("validate", script, "--voices-dir", anna)
    assert code == 2 and "consent covers en, not zh-TW" in output

    code, output = cli("voices", "amend", "anna", "--languages", "en,zh-TW,th",
                       "--voices-dir", anna)
    assert code == 2 and "widening the terms (languages th, zh-TW) needs the person's new " \
                         "recorded consent" in output
    recording = speak(tmp_path / "wider.wav", NEW_STATEMENT)
    code, output = cli("voices", "amend", "anna", "--languages", "en,zh-TW,th",
                       "--consent", recording, "--statement", NEW_STATEMENT,
                       "--voices-dir", anna)
    assert code == 0, output
    record = yaml.safe_load((anna / "anna" / "voice.yaml").read_text(encoding="utf-8"))
    assert record["consent"]["languages"] == ["en", "zh-TW", "th"]
    assert (anna / "anna" / record["consent"]["recording"]["file"]).is_file()
    assert record["consent"]["recording"]["file"] != "consent.wav"
    assert record["consent"]["statement"] == NEW_STATEMENT
    code, output = cli("validate", script, "--voices-dir", anna)
    assert code == 0, output


ZH = {"title": "測試", "scenes": {"isolate": {"narration": "在主斷路器關閉輸送帶。",
                                               "caption": "關閉電源"},
                                   "lock": {"narration": "掛上你的個人掛鎖。",
                                            "caption": "上鎖"}}}


def test_two_processes_appending_at_once_lose_no_entry(anna):
    program = (
        "import sys\nfrom pathlib import Path\nfrom stages import voices\n"
        "folder = Path(sys.argv[1])\nrecord = voices.load_voice(folder, 'anna')\n"
        "for i in range(25):\n"
        "    voices.record_synthesis(folder, record, 'en', 'training', sys.argv[2], f's{i}',"
        " f'{i:064x}')\n")
    workers = [subprocess.Popen([sys.executable, "-c", program, str(anna), name], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
               for name in ("build-a", "build-b")]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    entries = [json.loads(line) for line in lines(anna)]
    assert len(entries) == 3 + 50
    made = [(e["script"], e["scene"]) for e in entries if e["event"] == "synthesis"]
    assert sorted(made) == sorted((s, f"s{i}") for s in ("build-a", "build-b") for i in range(25))
    code, audit = cli("voices", "audit", "--json", "--voices-dir", anna)
    assert code == 0 and json.loads(audit)["ledger"]["entries"] == 53


def test_threads_checking_consent_while_another_appends_never_wait_on_each_other(
        anna, monkeypatch):
    """Narrations at a hosted service run side by side in one process: each checks consent
    (reads the ledger) while another records its synthesis (appends). On a slow disk a
    reader sees the new line before the appender has remembered it as verified."""
    record = load_voice(anna, "anna")
    write_line = ledger._write_line

    def slow_disk(path: Path, text: str) -> None:
        write_line(path, text)
        time.sleep(0.02)

    monkeypatch.setattr(ledger, "_write_line", slow_disk)

    failures: list[BaseException] = []

    def append(scenes: range) -> None:
        for index in scenes:
            record_synthesis(anna, record, "en", "training", "sop", f"s{index}", f"{index:064x}")

    def check(times: int) -> None:
        for _ in range(times):
            check_consent(anna, "anna", "en", "training")

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:   # reported by the assertions below
                failures.append(exc)
        return run

    # Daemon threads: were they stuck on each other, the test must still end (and fail).
    threads = [threading.Thread(target=guarded(lambda: append(range(0, 20))), daemon=True),
               threading.Thread(target=guarded(lambda: append(range(20, 40))), daemon=True),
               *[threading.Thread(target=guarded(lambda: check(60)), daemon=True)
                 for _ in range(2)]]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), \
        "threads reading and appending the ledger are stuck on each other"
    assert not failures, failures
    assert len(lines(anna)) == 3 + 40


def test_the_key_is_kept_safe(tmp_path, recordings, monkeypatch):
    voices = tmp_path / "voices"
    monkeypatch.setenv("SOPREEL_CONSENT_KEY", str(voices / "key.pem"))
    with pytest.raises(Exception, match="inside the voices folder"):
        enrol_anna(voices, recordings)
    assert not (voices / "anna").exists()

    key = tmp_path / "keys" / "org.pem"
    monkeypatch.setenv("SOPREEL_CONSENT_KEY", str(key))
    code, output = cli("voices", "init-key", "--organisation", "Acme", "--voices-dir", voices)
    assert code == 0, output
    assert "created, mode 0600" in output and "SHA256:" in output
    code, output = cli("voices", "init-key", "--voices-dir", voices)
    assert code == 0 and "(existing)" in output
    key.chmod(0o644)
    code, output = cli("voices", "init-key", "--voices-dir", voices)
    assert code == 2 and f"chmod 600 {key}" in output


def test_a_lost_key_starts_a_new_ledger_and_voices_enrol_again(tmp_path, anna, recordings,
                                                               monkeypatch):
    monkeypatch.setenv("SOPREEL_CONSENT_KEY", str(tmp_path / "new-key.pem"))
    code, output = cli("voices", "show", "anna", "--voices-dir", anna)
    assert code == 0, output   # checking needs only the pinned public key
    code, output = cli("voices", "init-key", "--new-ledger", "--voices-dir", anna)
    assert code == 0 and "Retired the old ledger" in output
    script = write_script(tmp_path, base_script(voice="anna"))
    code, output = cli("validate", script, "--voices-dir", anna)
    assert code == 2 and "enrol 'anna' again" in output
    assert len(list(anna.glob("retired-*"))) == 2


@pytest.mark.usefixtures("prefect_server")
def test_the_key_in_a_prefect_secret_block(tmp_path, recordings, monkeypatch):
    from prefect.blocks.system import Secret

    monkeypatch.setenv("SOPREEL_CONSENT_KEY", "prefect-secret:test-consent-key")
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings)
    pem = Secret.load("test-consent-key").get()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    code, output = cli("voices", "revoke", "anna", "--voices-dir", voices)
    assert code == 0, output
    assert [json.loads(line)["event"] for line in lines(voices)][-1] == "revoke"
