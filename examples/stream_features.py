"""A strategy's view of FeatureService.StreamFeatures: print every update of the symbols
asked for (all when none), and flag a price stretched more than 2 standard deviations
from its 5-minute mean. Stops after --count messages or --seconds."""
import argparse
import importlib
import pathlib
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_stubs():
    out = tempfile.mkdtemp(prefix="himari-features-")
    well_known = str(pathlib.Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(ROOT / "proto/himari/v1/features.proto")])
    if rc != 0:
        sys.exit("could not compile features.proto")
    sys.path.insert(0, out)
    return (importlib.import_module("himari.v1.features_pb2"),
            importlib.import_module("himari.v1.features_pb2_grpc"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("symbols", nargs="*", help="e.g. BTC/USDT (none: every symbol)")
    ap.add_argument("--target", default="127.0.0.1:9082", help="the feature-engine's gRPC port")
    ap.add_argument("--count", type=int, default=50, help="stop after this many messages")
    ap.add_argument("--seconds", type=float, default=60, help="stop after this long")
    args = ap.parse_args()
    pb, pb_grpc = load_stubs()
    with grpc.insecure_channel(args.target) as ch:
        stub = pb_grpc.FeatureServiceStub(ch)
        stream = stub.StreamFeatures(pb.StreamFeaturesRequest(symbols=args.symbols),
                                     timeout=args.seconds)
        n = 0
        try:
            for msg in stream:
                v = msg.features.values
                z = v.get("price_zscore_5m")
                signal = "stretched" if z is not None and abs(z) > 2 else ""
                print(f"{msg.features.symbol:10s} ts={msg.features.timestamp_ms} "
                      f"last={v.get('last_price')} vwap_1m={v.get('vwap_1m')} "
                      f"z_5m={z} {signal}".rstrip(), flush=True)
                n += 1
                if n >= args.count:
                    stream.cancel()
                    break
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                sys.exit(f"StreamFeatures: {e.code().name}: {e.details()}")
    print(f"{n} updates", file=sys.stderr)


if __name__ == "__main__":
    main()
