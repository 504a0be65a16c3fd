"""``genrevision serve``: the web page and JSON API."""
from __future__ import annotations

from . import _common as c


def add_parser(sub, fmt) -> None:
    p = sub.add_parser("serve", help="a web page and JSON API: drop a song, see its spectrograms, get its genre",
                       formatter_class=fmt, epilog=c.examples(
                           "genrevision serve --model genres.model   # then open http://127.0.0.1:8000"))
    p.add_argument("--model", required=True, metavar="FILE", help="model file written by 'genrevision train'")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=100.0, help="largest upload accepted (default: %(default)g MB)")
    p.add_argument("--max-minutes", type=float, default=20.0,
                   help="longest audio accepted: bounds the time of one request (default: %(default)g)")
    p.add_argument("--workers", type=int, default=1, help="predictions running at once (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=8, help="requests waiting beside them; more get 503 (default: %(default)s)")
    p.add_argument("--upload-timeout", type=float, default=20.0, metavar="S",
                   help="seconds an upload may take, plus one per 32 KiB received; a slower one gets 408 and "
                        "frees its place (default: %(default)g)")
    p.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                   help="a host name the page is reached by (repeatable); others get 400. Default: the loopback "
                        "names when listening on loopback, else any")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..apps.serve import run_server

    extra = {"allowed_hosts": args.allowed_host} if args.allowed_host else {}
    run_server(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
               max_duration_s=60 * args.max_minutes, workers=args.workers, max_queue=args.max_queue,
               upload_timeout_s=args.upload_timeout, **extra)
    return 0
