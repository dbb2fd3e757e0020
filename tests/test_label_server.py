"""The labelling app's API: judgements, undo, resume, concurrency, overlap, bad requests, auth, escaping."""

import asyncio
import errno
import json
import os
import signal
import socket
import sqlite3
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
from rlhf_gym.labelling import LabelStore, StoreError, UnknownPair, agreement, create_app, load_pairs
from rlhf_gym.labelling.app import MAX_BODY_BYTES, STATIC_DIR
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
    ({"labeler": "ana", "pair_id": 2**70, "choice": "left"}, 422),  # beyond SQLite's integers: was a 500
    ({"labeler": "ana", "pair_id": 2**63, "choice": "left"}, 422),
    ({"labeler": "ana", "pair_id": -1, "choice": "left"}, 422),
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
        (pair(pair_id=2**70), "column 'pair_id' must be a non-negative integer up to 9223372036854775807"),
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


def test_out_of_range_pair_id_is_a_clear_error(files):
    pairs, out = files
    store = LabelStore(out, load_pairs(pairs))
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        next_pair(client)
        response = judge(client, 2**70, "left")
        with pytest.raises(UnknownPair, match=f"no pair with id {2**70}"):
            store.judge("ana", 2**70, "left")
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "pair_id"] and "less than or equal to 9223372036854775807" in error["msg"]


def post_stream(app, chunks, path="/api/judge", headers=()):
    """POST ``chunks`` (bytes, read lazily) to ``app`` at the ASGI level, streamed without a Content-Length unless
    ``headers`` give one; returns the status, the JSON reply and how many chunks the app read."""
    chunks = iter(chunks)
    read, sent = 0, []

    async def receive():
        nonlocal read
        chunk = next(chunks, None)
        read += chunk is not None
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        sent.append(message)

    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query.encode(),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), *headers],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:])), read


def megabytes(n):
    """``n`` MiB of a JSON body, in 64 KiB chunks made only when read."""
    yield b'{"labeler": "ana", "pair_id": "'
    for _ in range(n * 16):
        yield b"7" * 65536


def test_token_is_checked_before_the_body_is_read(files):
    pairs, out = files
    app = create_app(LabelStore(out, load_pairs(pairs)), token="s3cret")
    status, reply, read = post_stream(app, megabytes(20))
    assert (status, reply, read) == (401, {"detail": "missing or wrong token"}, 0)


def test_body_over_the_limit_is_refused_unread(files):
    pairs, out = files
    app = create_app(LabelStore(out, load_pairs(pairs)), token="s3cret")
    limit = f"over the limit of {MAX_BODY_BYTES} bytes"
    # Content-Length says too much: refused before reading anything
    status, reply, read = post_stream(app, megabytes(20), "/api/judge?token=s3cret", [(b"content-length", b"20971600")])
    assert status == 413 and limit in reply["detail"] and read == 0
    # a stream without Content-Length: read no further than the chunk that crosses the limit
    status, reply, read = post_stream(app, megabytes(20), "/api/judge?token=s3cret")
    assert status == 413 and limit in reply["detail"] and read == 2  # the opening and the 64 KiB chunk over the limit
    with TestClient(app, base_url="http://127.0.0.1") as client:
        headers = {"Authorization": "Bearer s3cret"}
        response = client.post("/api/judge", content=b" " * (MAX_BODY_BYTES + 1), headers=headers)
        assert response.status_code == 413 and limit in response.json()["detail"]
        assert "content-security-policy" in response.headers
        assert client.get("/api/next", params={"labeler": "ana"}, headers=headers).status_code == 200
        body = {"labeler": "ana", "pair_id": 0, "choice": "left"}
        assert client.post("/api/judge", json=body, headers=headers).status_code == 200  # within the limit


@pytest.mark.parametrize("body", [
    {"labeler": "ana", "pair_id": "7" * 10000, "choice": "left"},
    {"labeler": "ana" + "7" * 10000, "pair_id": 0, "choice": "left"},
    {"labeler": "ana", "pair_id": 0, "choice": "left", "7" * 10000: 1},
    {"labeler": "ana", "pair_id": 0, "choice": "left", **{f"x{k}": 7 for k in range(1000)}},
    "{" + "7" * 10000,
])
def test_bad_requests_are_not_echoed_back(files, body):
    with client_for(files) as client:
        next_pair(client)
        content = body if isinstance(body, str) else json.dumps(body)
        response = client.post("/api/judge", content=content, headers={"Content-Type": "application/json"})
        query = client.get("/api/next", params={"labeler": "<" + "7" * 10000})
    for reply in (response, query):
        assert reply.status_code == 422
        assert len(reply.content) < 2000 and "7" * 50 not in reply.text
    assert response.json()["detail"][0]["msg"]  # the page shows the first message


def test_disk_full_loses_nothing_and_says_so(files, monkeypatch, tmp_path):
    _, out = files
    with client_for(files) as client:
        judge(client, next_pair(client)["pair_id"], "left")
        saved = out.read_text()

        def disk_full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", disk_full)
        response = judge(client, next_pair(client)["pair_id"], "right")
        assert response.status_code == 507
        assert response.json()["detail"].startswith(f"cannot write {out}: No space left on device")
        assert out.read_text() == saved and sorted(tmp_path.glob(".*.tmp")) == []
        assert client.get("/stats").json()["judgements_total"] == 1
        monkeypatch.undo()  # space freed: the same judgement goes through
        assert judge(client, 1, "right").status_code == 200
    assert [r["pair_id"] for r in records(out)] == [0, 1]


def test_full_database_loses_nothing_and_says_so(tmp_path):
    out = tmp_path / "prefs.jsonl"
    store = LabelStore(out, load_pairs(write_pairs(tmp_path / "pairs.jsonl", n=300)))
    db_pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {db_pages}")  # SQLite's own "database or disk is full"
    labeler = "a" * 64  # long rows fill the database sooner
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        acknowledged = []
        for _ in range(300):
            response = client.get("/api/next", params={"labeler": labeler})
            if response.status_code == 200:
                pair_id = response.json()["pair"]["pair_id"]
                response = judge(client, pair_id, "left", labeler)
            if response.status_code != 200:
                break
            acknowledged.append(pair_id)
        assert acknowledged and response.status_code == 507
        assert response.json()["detail"].startswith(f"cannot write {store.db_path}: database or disk is full")
        assert [r["pair_id"] for r in records(out)] == acknowledged
        store._db.execute("PRAGMA max_page_count = 1000000")  # space freed
        pair_id = next_pair(client, labeler)["pair_id"]
        assert judge(client, pair_id, "left", labeler).status_code == 200
    assert [r["pair_id"] for r in records(out)] == [*acknowledged, pair_id]


class CommitFails:
    """A store connection whose next COMMIT fails as on a full disk (SQLite writes its WAL at commit)."""

    def __init__(self, db):
        self.db, self.failed = db, False

    def __getattr__(self, name):
        return getattr(self.db, name)

    def execute(self, sql, *args):
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)


def test_failed_commit_keeps_the_jsonl_equal_to_the_database(files):
    pairs, out = files
    store = LabelStore(out, load_pairs(pairs))
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        judge(client, next_pair(client)["pair_id"], "left")
        next_pair(client)
        store._db = CommitFails(store._db)
        response = judge(client, 1, "left")  # the JSONL was written before the commit failed
        assert response.status_code == 507 and str(store.db_path) in response.json()["detail"]
        assert [r["pair_id"] for r in records(out)] == [0]
        assert client.get("/stats").json()["judgements_total"] == 1


@pytest.fixture
def read_only():
    """Make a path read-only, for root too (the immutable attribute), and writable again afterwards."""
    made = []

    def make(path):
        if os.geteuid() == 0:  # root writes through permissions but not through the immutable attribute
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                pytest.skip("root and no chattr +i here: cannot make a read-only path")
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
        made.append(path)

    yield make
    for path in reversed(made):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_cli_names_an_unusable_output(tmp_path, capsys, read_only):
    pairs = write_pairs(tmp_path / "pairs.jsonl")

    def error_for(out):
        return cli_error(capsys, "label", ["--pairs", pairs, "--out", out])

    (tmp_path / "folder").mkdir()
    assert error_for(tmp_path / "folder") == f"error: {tmp_path / 'folder'} is a directory, not a file to write"
    assert error_for(pairs / "prefs.jsonl") == f"error: cannot write {pairs / 'prefs.jsonl'}: {pairs} is not a directory"
    (tmp_path / "odd.jsonl.sqlite").mkdir()  # the store's database path is taken
    assert error_for(tmp_path / "odd.jsonl").startswith(f"error: cannot open {tmp_path / 'odd.jsonl.sqlite'}: ")
    resumed = tmp_path / "done" / "prefs.jsonl"
    LabelStore(resumed, load_pairs(pairs)).close()
    read_only(resumed)
    assert error_for(resumed) == f"error: cannot write {resumed}: the file is read-only"
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    assert error_for(locked / "prefs.jsonl") == f"error: cannot write {locked / 'prefs.jsonl'}: {locked} is not writable"
    assert not (locked / "prefs.jsonl").exists() and resumed.read_text() == ""


def test_cli_names_the_output_when_the_disk_is_full_at_start(tmp_path, capsys, monkeypatch):
    pairs, out = write_pairs(tmp_path / "pairs.jsonl"), tmp_path / "prefs.jsonl"

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    assert cli_error(capsys, "label", ["--pairs", pairs, "--out", out]) == (
        f"error: cannot write {out}: No space left on device")
    monkeypatch.undo()
    LabelStore(out, load_pairs(pairs)).close()  # the store is not left locked or half made


def test_overlapping_labels_carry_the_pair_id(tmp_path):
    """With --overlap 3 a pair has three records; ``pair_id`` (and the same prompt and responses) marks them as one."""
    out = tmp_path / "prefs.jsonl"
    with client_for((write_pairs(tmp_path / "pairs.jsonl", n=4), out), overlap=3) as client:
        run_labelers(client, ["ana", "bob", "cy"])
    by_pair = {}
    for record in records(out):
        by_pair.setdefault(record["pair_id"], []).append(record)
    assert sorted(by_pair) == [0, 1, 2, 3]
    for pair_id, group in by_pair.items():
        assert sorted(r["labeler"] for r in group) == ["ana", "bob", "cy"]
        assert {(r["prompt"], frozenset((r["chosen"], r["rejected"]))) for r in group} == {
            (f"prompt {pair_id}", frozenset((f"a{pair_id}", f"b{pair_id}")))}
