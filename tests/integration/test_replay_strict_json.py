"""The ingest-validator's output is strict JSON whatever numbers its input holds.

A generated file of raw records with hostile number tokens in every position (each known
field, unknown fields, arrays and objects nested in them: 1e999, 1e-999, 40-digit and
20-digit integers beyond int64, 0e400, NaN/Infinity, the same as numeric strings) goes
through `ingest-validator --replay`; every output line must load in Python's json with
strict hooks (no NaN/Infinity, no non-finite float, no integer outside int64, no
duplicate key) and in jansson (JSON_REJECT_DUPLICATES, through ctypes), and its
original_data must give back the input line byte for byte: the object itself when the
input was strict JSON, else a string holding it. No server is needed.
"""
import ctypes
import ctypes.util
import json
import math
import random
import subprocess

from conftest import BIN

HOSTILE = ["1e999", "-1e999", "1e-999", "-1.5e-400", "1e400",
           "1234567890123456789012345678901234567890",
           "-1234567890123456789012345678901234567890", "18446744073709551616",
           "99999999999999999999", "9223372036854775808", "-9223372036854775809",
           "1.7976931348623159e308", "0e400", "0e-16384", "7" * 400, "NaN", "Infinity",
           "-Infinity", '"1e999"', '"1e-999"', '"1234567890123456789012345678901234567890"',
           '"18446744073709551616"', '"NaN"']
EDGE = ["0", "-0", "0.0", "37012.53", "1e-05", "9223372036854775807", "-9223372036854775808",
        "12345678901234567890.5", "1e19", "5e-324", "1.7976931348623157e308", "0e308", "null",
        "true", '"x"', "[]", "{}"]
FIELDS = [("timestamp", "1700000000123"), ("symbol", '"BTC/USDT"'), ("exchange", '"binance"'),
          ("price", "37012.53"), ("volume", "0.25"), ("trade_id", "3000000001"),
          ("side", '"buy"'), ("amount", "2.5"), ("asset", '"BTC"'), ("from", '"0xa"'),
          ("to", '"0xb"'), ("quote_volume", "9253.1"), ("ingest_ts", "1700000000130")]


def value(rng: random.Random, hostile: bool, usual: str) -> str:
    k = rng.randrange(10)
    if hostile and k < 4:
        return rng.choice(HOSTILE)
    if k < 6:
        return rng.choice(EDGE)
    return usual


def hostile_records(n: int, seed: int = 7):
    """n raw records (bytes, one line each); three in four carry hostile values."""
    rng = random.Random(seed)
    for _ in range(n):
        hostile = rng.randrange(4) != 0
        members = ['"type":' + rng.choice(['"trade"', '"liquidation"', '"transfer"'])]
        for name, usual in FIELDS:
            if rng.randrange(8):
                members.append(f'"{name}":{value(rng, hostile, usual)}')
        if rng.randrange(2):
            members.append(f'"meta":[1,{{"fills":[{value(rng, hostile, "2.5")},'
                           f'{{"q":{value(rng, hostile, "0.1")}}}]}},"s"]')
        yield ("{" + ", ".join(members) + "}").encode()


class Jansson:
    """json_loadb from the system's libjansson: the C parser services downstream use."""
    REJECT_DUPLICATES = 0x1

    def __init__(self):
        path = ctypes.util.find_library("jansson")
        assert path, "libjansson not found"
        self.lib = ctypes.CDLL(path)
        self.lib.json_loadb.restype = ctypes.c_void_p
        self.lib.json_loadb.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                                        ctypes.c_void_p]
        self.lib.json_delete.argtypes = [ctypes.c_void_p]

    def error(self, line: bytes):
        """None when jansson loads the line, else its message."""
        err = ctypes.create_string_buffer(512)  # json_error_t: 3 ints, source[80], text[160]
        j = self.lib.json_loadb(line, len(line), self.REJECT_DUPLICATES, err)
        if not j:
            return err.raw[12 + 80:12 + 80 + 160].split(b"\0", 1)[0].decode()
        # json_decref is a macro; the only reference is ours, so delete the value
        self.lib.json_delete(ctypes.c_void_p(j))
        return None


def _refuse(what):
    def hook(s):
        raise ValueError(f"{what}: {s}")
    return hook


def _strict_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"non-finite float: {s}")
    mantissa = s.lower().split("e")[0]
    if v == 0.0 and any(c in mantissa for c in "123456789"):
        raise ValueError(f"underflows to zero: {s}")  # the validator's own rule, stricter
    return v


def _strict_int(s: str) -> int:
    v = int(s)
    if not -2**63 <= v < 2**63:
        raise ValueError(f"integer beyond int64: {s}")
    return v


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate key in {keys}")
    return dict(pairs)


def strict_loads(line: bytes):
    return json.loads(line, parse_constant=_refuse("NaN/Infinity"), parse_float=_strict_float,
                      parse_int=_strict_int, object_pairs_hook=_no_duplicates)


def test_every_replay_line_of_hostile_input_loads_strictly_and_keeps_its_original(tmp_path):
    raws = list(hostile_records(3000))
    ticks = tmp_path / "hostile.jsonl"
    ticks.write_bytes(b"\n".join(raws) + b"\n")
    out = tmp_path / "quality.jsonl"
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(ticks), "--output", str(out)],
                   check=True, timeout=120, stderr=subprocess.DEVNULL)
    lines = out.read_bytes().splitlines()
    assert len(lines) == len(raws)
    jansson = Jansson()
    refused, embedded = [], 0
    for raw, line in zip(raws, lines):
        try:
            rec = strict_loads(line)
        except ValueError as e:
            refused.append(f"python: {e}: {line[:300]!r}")
            continue
        err = jansson.error(line)
        if err:
            refused.append(f"jansson: {err}: {line[:300]!r}")
            continue
        assert rec["issues"] != ["PARSE_ERROR"], line[:300]
        orig = rec["original_data"]
        if isinstance(orig, str):
            embedded += 1
            assert orig.encode() == raw
        else:
            assert isinstance(orig, dict)
            assert line.endswith(b',"original_data":' + raw + b"}")
    assert not refused, f"{len(refused)} of {len(lines)} lines refused:\n" + "\n".join(refused[:5])
    # both embeddings were exercised in bulk
    assert embedded > 1500 and len(lines) - embedded > 300, embedded


def test_a_line_longer_than_the_reader_buffer_is_streamed_whole_to_the_dlq(tmp_path):
    """A 9 MiB line (beyond the 8 MiB buffer of the shared JSONL reader) is one PARSE_ERROR
    record, goes to --dlq byte for byte, and the lines around it are judged as usual."""
    good = b'{"timestamp":1700000000123,"symbol":"BTC/USDT","exchange":"binance",' \
           b'"price":37000.5,"volume":0.25}'
    huge = b'{"symbol":"' + b"x" * (9 << 20) + b'"}'
    src = tmp_path / "in.jsonl"
    src.write_bytes(good + b"\n" + huge + b"\r\n" + good + b"\n")
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(src), "--output", str(out),
                    "--dlq", str(dlq)], check=True, capture_output=True)
    lines = out.read_bytes().splitlines()
    assert len(lines) == 3
    recs = [json.loads(line) for line in lines]
    assert [r["issues"] == ["PARSE_ERROR"] for r in recs] == [False, True, False]
    assert recs[1]["original_data"] is None and recs[1]["original_bytes"] == len(huge)
    assert dlq.read_bytes() == huge + b"\n"
