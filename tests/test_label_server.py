"""The labelling app's API: judgements, undo, resume, concurrency, overlap, bad requests, auth, escaping."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import cli_error

from rlhf_gym.cli import run_command
from rlhf_gym.commands import label
from rlhf_gym.labelling import LabelStore, StoreError, agreement, create_app, load_pairs
from rlhf_gym.labelling.app import STATIC_DIR
from rlhf_gym.preferences import PreferenceDataError, load_preferences

ROOT = Path(__file__).resolve().parents[1]
XSS = "<script>alert(1)</script> & <b>bold</b>"


def write_pairs(path, n=5, texts=None):
    texts = texts or {}
    lines = [json.dumps({"pair_id": k, "prompt": f"prompt {k}", "response_a": texts.get(k, f"a{k}"),
                         "response_b": f"b{k}"}) for k in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    return write_pairs(tmp_path / "pairs.jsonl", texts={1: XSS}), tmp_path / "prefs.jsonl"


def client_for(files, token=None, **store_kwargs):
    pairs, out = files
    return TestClient(create_app(LabelStore(out, load_pairs(pairs), **store_kwargs), token=token),
                      base_url="http://127.0.0.1")


def next_pair(client, labeler="ana"):
    response = client.get("/api/next", params={"labeler": labeler})
    assert response.status_code == 200, response.text
    return response.json()["pair"]


def judge(client, pair_id, choice, labeler="ana"):
    return client.post("/api/judge", json={"labeler": labeler, "pair_id": pair_id, "choice": choice})


def records(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_judgements_are_stage1_preferences(files):
    pairs, out = files
    texts = {pair.pair_id: (pair.response_a, pair.response_b) for pair in load_pairs(pairs)}
    with client_for(files) as client:
        shown = {}
        for choice in ["left", "right", "tie", "skip", "left"]:
            pair = next_pair(client)
            shown[pair["pair_id"]] = (pair, choice)
            assert judge(client, pair["pair_id"], choice).status_code == 200
            assert pair["pair_id"] in [r["pair_id"] for r in records(out)]  # acknowledged means written
        assert next_pair(client) is None
    lines = records(out)
    assert [r["pair_id"] for r in lines] == [0, 1, 2, 3, 4]
    for record in lines:
        pair, choice = shown[record["pair_id"]]
        a, b = texts[record["pair_id"]]
        assert record["labeler"] == "ana" and record["time"] > 0 and record["prompt"] == pair["prompt"]
        assert (pair["left"], pair["right"]) == ((a, b) if record["shown_left"] == "a" else (b, a))
        if choice in ("left", "right"):
            assert "label" not in record
            other = "right" if choice == "left" else "left"
            assert (record["chosen"], record["rejected"]) == (pair[choice], pair[other])
            assert record["judgement"] == ("a" if record["chosen"] == a else "b")
        else:
            assert record["label"] == record["judgement"] == choice
            assert (record["chosen"], record["rejected"]) == (a, b)
    assert len(load_preferences(out)) == 3
    assert len(load_preferences(out, include_non_preferences=True)) == 5


def test_left_right_order_is_seeded_and_recorded(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=40)

    def sides(seed, out):
        store = LabelStore(tmp_path / out, load_pairs(pairs), seed=seed)
        try:
            return [store.side(k, "ana") for k in range(40)]
        finally:
            store.close()

    first = sides(0, "one.jsonl")
    assert first == sides(0, "two.jsonl")
    assert first != sides(1, "three.jsonl")
    assert 10 < first.count("a") < 30
    with client_for((pairs, tmp_path / "prefs.jsonl")) as client:
        pair = next_pair(client)
        judge(client, pair["pair_id"], "left")
    assert records(tmp_path / "prefs.jsonl")[0]["shown_left"] == first[0]


def test_undo(files):
    _, out = files
    with client_for(files) as client:
        assert client.post("/api/undo", json={"labeler": "ana"}).status_code == 409
        for choice in ["left", "right"]:
            judge(client, next_pair(client)["pair_id"], choice)
        assert next_pair(client)["pair_id"] == 2
        response = client.post("/api/undo", json={"labeler": "ana"})
        assert response.json()["undone"] == 1 and response.json()["progress"]["judged"] == 1
        assert [r["pair_id"] for r in records(out)] == [0]
        assert next_pair(client)["pair_id"] == 1  # the undone pair comes back first
        assert judge(client, 1, "tie").status_code == 200
        assert next_pair(client)["pair_id"] == 2
    assert [(r["pair_id"], r.get("label")) for r in records(out)] == [(0, None), (1, "tie")]


def test_resume_after_restart(files):
    _, out = files
    with client_for(files) as client:
        for _ in range(2):
            judge(client, next_pair(client)["pair_id"], "left")
        next_pair(client, "bob")  # bob holds pair 2
    with client_for(files) as client:
        assert next_pair(client, "ana")["pair_id"] == 3
        assert next_pair(client, "bob")["pair_id"] == 2
        assert client.get("/api/next", params={"labeler": "ana"}).json()["progress"] == {"judged": 2, "remaining": 2}
    assert len(load_preferences(out)) == 2


def test_killed_server_loses_nothing_acknowledged(files):
    pairs, out = files
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, str(ROOT / "scripts" / "label_server.py"), "--pairs", str(pairs), "--out", str(out),
               "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                pair = httpx.get(f"{base}/api/next", params={"labeler": "ana"}).json()["pair"]
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()
                time.sleep(0.2)
        for choice in ["left", "right"]:
            body = {"labeler": "ana", "pair_id": pair["pair_id"], "choice": choice}
            response = httpx.post(f"{base}/api/judge", json=body)
            assert response.status_code == 200
            pair = httpx.get(f"{base}/api/next", params={"labeler": "ana"}).json()["pair"]
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
    assert [r["pair_id"] for r in load_preferences(out)] == [0, 1]
    with client_for(files) as client:
        assert next_pair(client)["pair_id"] == 2


def run_labelers(client, names):
    """Each name labels in its own thread until nothing is left; returns {name: [pair ids]}."""
    judged = {name: [] for name in names}
    errors = []
    barrier = threading.Barrier(len(names))

    def work(name):
        barrier.wait()
        while (pair := next_pair(client, name)) is not None:
            response = judge(client, pair["pair_id"], "left", name)
            if response.status_code != 200:
                errors.append(response.text)
                return
            judged[name].append(pair["pair_id"])

    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return judged


def test_two_labelers_share_the_pairs(tmp_path):
    out = tmp_path / "prefs.jsonl"
    with client_for((write_pairs(tmp_path / "pairs.jsonl", n=40), out)) as client:
        judged = run_labelers(client, ["ana", "bob"])
        stats = client.get("/stats").json()
    assert sorted(judged["ana"] + judged["bob"]) == list(range(40))  # every pair once, none twice
    assert judged["ana"] and judged["bob"]
    assert sorted(r["pair_id"] for r in records(out)) == list(range(40))
    assert stats["pairs_remaining"] == 0 and stats["judgements_total"] == 40
    assert stats["labelers"]["ana"]["judged"] == len(judged["ana"])


def test_overlap_gives_each_pair_to_k_labelers(tmp_path):
    out = tmp_path / "prefs.jsonl"
    with client_for((write_pairs(tmp_path / "pairs.jsonl", n=30), out), overlap=2) as client:
        judged = run_labelers(client, ["ana", "bob", "cy"])
        stats = client.get("/stats").json()
    for ids in judged.values():
        assert len(ids) == len(set(ids))  # nobody judges a pair twice
    labelers_of = {}
    for record in records(out):
        labelers_of.setdefault(record["pair_id"], set()).add(record["labeler"])
    assert sorted(labelers_of) == list(range(30)) and all(len(names) == 2 for names in labelers_of.values())
    assert stats["pairs_complete"] == 30 and stats["pairs_remaining"] == 0 and stats["judgements_total"] == 60
    assert stats["agreement"]["pairs"] == 30 and 0.0 <= stats["agreement"]["rate"] <= 1.0


def test_skipped_pair_goes_to_another_labeler(files):
    with client_for(files) as client:
        assert judge(client, next_pair(client, "ana")["pair_id"], "skip", "ana").status_code == 200
        assert next_pair(client, "bob")["pair_id"] == 0
        assert next_pair(client, "ana")["pair_id"] == 1


def test_abandoned_pair_is_released_after_its_lease(files):
    with client_for(files, lease_seconds=0.0) as client:
        assert next_pair(client, "ana")["pair_id"] == 0
        assert next_pair(client, "bob")["pair_id"] == 0  # ana's lease ran out
        assert judge(client, 0, "right", "bob").status_code == 200
        assert judge(client, 0, "left", "ana").status_code == 409  # full now
        assert next_pair(client, "ana")["pair_id"] == 1


def test_agreement_is_cohens_kappa_for_two_labelers():
    ana = ["a", "a", "b", "b", "tie"]
    bob = ["a", "b", "b", "b", "tie"]
    judgements = {k: {"ana": x, "bob": y} for k, (x, y) in enumerate(zip(ana, bob, strict=True))}
    result = agreement(judgements | {9: {"ana": "a"}})  # pair 9 has one label: not counted
    # p_o = 0.8; p_e = 0.4*0.2 + 0.4*0.6 + 0.2*0.2 = 0.36; kappa = 0.44 / 0.64
    assert result == {"pairs": 5, "comparisons": 5, "rate": pytest.approx(0.8), "cohen_kappa": pytest.approx(0.6875)}
    assert agreement({}) == {"pairs": 0, "comparisons": 0, "rate": None, "cohen_kappa": None}


@pytest.mark.parametrize("body, status", [
    ({"labeler": "ana", "pair_id": 99, "choice": "left"}, 404),
    ({"labeler": "ana", "pair_id": 3, "choice": "left"}, 409),  # not the pair shown to ana
    ({"labeler": "ana", "pair_id": 0, "choice": "middle"}, 422),
    ({"labeler": "ana", "pair_id": "0", "choice": "left"}, 422),
    ({"labeler": "ana", "pair_id": 0, "choice": "left", "path": "/etc/passwd"}, 422),
    ({"labeler": "../x", "pair_id": 0, "choice": "left"}, 422),
    ({"pair_id": 0, "choice": "left"}, 422),
    ([1, 2], 422),
])
def test_bad_judgements_write_nothing(files, body, status):
    _, out = files
    with client_for(files) as client:
        assert next_pair(client)["pair_id"] == 0
        assert client.post("/api/judge", json=body).status_code == status
        not_json = client.post("/api/judge", content=b"{not json", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 422
        assert client.get("/api/next", params={"labeler": "<b>"}).status_code == 422
        assert client.get("/stats").json()["judgements_total"] == 0
    assert out.read_text() == ""


def test_judging_twice_is_refused(files):
    with client_for(files) as client:
        next_pair(client)
        assert judge(client, 0, "left").status_code == 200
        assert judge(client, 0, "right").status_code == 409
    assert len(records(files[1])) == 1


def test_token_guards_every_api_route(files):
    with client_for(files, token="s3cret") as client:
        assert client.get("/api/next", params={"labeler": "ana"}).status_code == 401
        assert client.get("/api/next", params={"labeler": "ana", "token": "wrong"}).status_code == 401
        assert client.post("/api/judge", json={"labeler": "ana", "pair_id": 0, "choice": "left"}).status_code == 401
        assert client.post("/api/undo", json={"labeler": "ana"}).status_code == 401
        assert client.get("/stats").status_code == 401
        assert client.get("/api/next", params={"labeler": "ana", "token": "s3cret"}).status_code == 200
        headers = {"Authorization": "Bearer s3cret"}
        body = {"labeler": "ana", "pair_id": 0, "choice": "left"}
        assert client.post("/api/judge", json=body, headers=headers).status_code == 200
        assert client.get("/stats", headers=headers).status_code == 200
        assert client.get("/").status_code == 200  # the page itself holds no data


def test_without_token_only_loopback_host_names_are_answered(files):
    with client_for(files) as client:
        assert client.get("/api/next", params={"labeler": "ana"}, headers={"Host": "evil.example"}).status_code == 400


def test_data_is_never_inserted_as_html(files):
    with client_for(files) as client:
        judge(client, next_pair(client)["pair_id"], "left")
        response = client.get("/api/next", params={"labeler": "ana"})
        page = client.get("/")
    assert response.headers["content-type"] == "application/json"
    assert json.dumps(XSS) in response.text  # the raw text, JSON-encoded
    assert XSS in (response.json()["pair"]["left"], response.json()["pair"]["right"])
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = (STATIC_DIR / "app.js").read_text()
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "createContextualFragment"):
        assert sink not in script and sink not in page.text
    assert "<script>" not in page.text.replace('<script src="/static/app.js" defer></script>', "")


def test_pairs_file_errors_name_file_and_line(tmp_path):
    def pair(**changes):
        return json.dumps({"pair_id": 1, "prompt": "p", "response_a": "x", "response_b": "y", **changes})

    good = pair(pair_id=0)
    cases = [
        ("{oops", "invalid JSON"),
        (json.dumps({"pair_id": 1, "prompt": "p", "response_a": "x"}), "missing column 'response_b'"),
        (pair(pair_id="1"), "column 'pair_id' must be a non-negative integer"),
        (pair(pair_id=True), "column 'pair_id' must be a non-negative integer"),
        (pair(pair_id=-1), "column 'pair_id' must be a non-negative integer"),
        (pair(response_a=" "), "column 'response_a' is empty"),
        (pair(prompt=3), "column 'prompt' must be a string"),
        (good, "duplicate pair_id 0 \\(first on line 1\\)"),
        ("[1]", "expected a JSON object"),
    ]
    for line, message in cases:
        path = tmp_path / "pairs.jsonl"
        path.write_text(good + "\n" + line + "\n")
        with pytest.raises(PreferenceDataError, match=rf"pairs.jsonl:2: {message}"):
            load_pairs(path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(PreferenceDataError, match=r"empty\.jsonl: no pairs"):
        load_pairs(tmp_path / "empty.jsonl")


def test_store_refuses_to_clobber_or_share(files, tmp_path):
    pairs, out = files
    foreign = tmp_path / "stage1.jsonl"
    foreign.write_text('{"prompt": "p", "chosen": "x", "rejected": "y"}\n')
    with pytest.raises(StoreError, match="not written by the label server"):
        LabelStore(foreign, load_pairs(pairs))
    assert foreign.read_text().startswith('{"prompt"')
    store = LabelStore(out, load_pairs(pairs))
    with pytest.raises(StoreError, match="in use by another label server"):
        LabelStore(out, load_pairs(pairs))
    store.close()
    write_pairs(pairs, texts={0: "changed"})
    with pytest.raises(StoreError, match="pair_id 0 of the pairs file differs"):
        LabelStore(out, load_pairs(pairs))


@pytest.mark.parametrize("extra, message", [
    (["--host", "0.0.0.0"], "pass --token"),
    (["--port", "http"], "argument --port: invalid int value"),
    (["--port", "70000"], "--port must be in 1..65535, got 70000"),
    (["--overlap", "0"], "--overlap must be >= 1, got 0"),
    (["--out", "{pairs}"], "--out must differ from --pairs"),
])
def test_cli_rejects_bad_arguments(files, capsys, monkeypatch, extra, message):
    monkeypatch.delenv("RLHF_LABEL_TOKEN", raising=False)
    pairs, out = files
    extra = [e.format(pairs=pairs) for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        run_command("label", ["--pairs", str(pairs), "--out", str(out), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RLHF_LABEL_TOKEN", "s3cret")
    assert label.Args(host="0.0.0.0").token == "s3cret"
    assert label.Args(token="given").token == "given"


def test_cli_names_a_bad_pairs_file_or_store(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"pair_id": 0}\n')
    out = tmp_path / "prefs.jsonl"
    assert cli_error(capsys, "label", ["--pairs", pairs, "--out", out]) == f"error: {pairs}:1: missing column 'prompt'"
    missing = tmp_path / "missing.jsonl"
    assert cli_error(capsys, "label", ["--pairs", missing, "--out", out]) == f"error: pairs file not found: {missing}"
    write_pairs(pairs)
    out.write_text('{"prompt": "p", "chosen": "x", "rejected": "y"}\n')  # Stage 1 output, not the label server's
    assert cli_error(capsys, "label", ["--pairs", pairs, "--out", out]).startswith(
        f"error: {out} exists but was not written by the label server")


def test_label_command_imports_neither_sb3_nor_agents():
    code = ("import sys; import rlhf_gym.commands.label; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'stable_baselines3', 'sb3_contrib', 'agents', 'envs'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_pairs_from_collect_preferences_round_trip(tmp_path, monkeypatch):
    import rlhf_gym.collect as collect

    def sample(policy, tokenizer, prompts, max_new_tokens, temperature, seed):  # stands in for the policy
        return [f"{prompt} sample {seed}" for prompt in prompts]

    monkeypatch.setattr(collect, "generate_texts", sample)
    pairs, out = tmp_path / "pairs.jsonl", tmp_path / "prefs.jsonl"
    collect.collect_preferences(None, None, ["the food was", "my room is"], None, pairs, n_pairs=4, progress=False)
    with client_for((pairs, out)) as client:
        while (pair := next_pair(client)) is not None:
            assert judge(client, pair["pair_id"], "right").status_code == 200
    assert [r["pair_id"] for r in load_preferences(out)] == [0, 1, 2, 3]
