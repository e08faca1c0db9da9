#!/usr/bin/env python3
"""Serve the instrument classifier on a web page and a JSON API.

The model is loaded once; waitress (a production WSGI server, not Flask's
development server) answers the requests on several threads.

Examples:

    python predict_webapp.py                    # the best model, http://127.0.0.1:5000/
    python predict_webapp.py -m data/working/multi-font-10000/models/<model_id> --port 8080
    curl -F audio_file=@note.wav http://127.0.0.1:5000/api/classify/instrument

Pages and endpoints:

    /                               upload page: file picker, drag and drop, example
                                    clips, probability bars, chromagram, audio player
    POST /api/classify/instrument   form field audio_file -> {"label", "probabilities",
                                    "model_id", "warnings", ...}
    GET  /api/model                 the loaded model: classes, metrics, date

Bad uploads get a 4xx with {"error": ...}: 400 no or empty file or a
malformed form, 413 over 10 MB (or a form over its limits), 415 unsupported
type, 422 not audio or corrupt.  Uploads are kept in memory only for the
request, and at most 60 s of one are decoded.  Limits, timeouts and what a
public deployment adds: README.md, "Reliability".  Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import logging
import sys

from instrument_classifier.cli import ArgumentParser, UserError, entry_point
from instrument_classifier.defaults import MAX_SERVER_THREADS, SERVER_THREADS

# Loopback only by default: pass --host 0.0.0.0 to serve the network.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python predict_webapp.py --port 8080, then open http://127.0.0.1:8080/")
    parser.add_argument("-m", "--model-dir", default=None,
                        help="model folder written by train.py (default: the best model of the default "
                             "dataset, as `leaderboard.py --best` picks it)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free port)")
    parser.add_argument("--threads", type=int, default=SERVER_THREADS,
                        help=f"request threads, 1-{MAX_SERVER_THREADS}")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    if not 1 <= args.threads <= MAX_SERVER_THREADS:
        raise UserError(f"--threads must be in 1..{MAX_SERVER_THREADS}, got {args.threads}")
    from instrument_classifier.leaderboard import default_model_dir
    from instrument_classifier.prediction import Predictor
    from instrument_classifier.webapp import create_app, make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    predictor = Predictor(default_model_dir(args.model_dir))
    app = create_app(predictor)
    try:
        server = make_server(app, host=args.host, port=args.port, threads=args.threads)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    except ValueError:  # waitress: the host does not resolve
        raise UserError(f"cannot listen on {args.host}:{args.port}: no such host or address") from None
    except RuntimeError as error:  # "can't start new thread": the machine's thread limit
        raise UserError(f"cannot start {args.threads} request threads: {error}") from None
    urls = " and ".join(f"http://{f'[{host}]' if ':' in host else host}:{port}/"
                        for host, port in server.effective_listen)
    print(f"serving model {predictor.model_id} on {urls} (Ctrl-C to stop)", flush=True)
    try:
        server.run()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
