"""Write back the files a capture boot printed between @@RK-BEGIN[-B64] NAME / @@RK-END."""

import base64
import pathlib
import re
import sys


def main() -> None:
    log, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    text = log.read_bytes().decode("latin-1").replace("\r\n", "\n")
    for m in re.finditer(r"@@RK-BEGIN(-B64)? (\S+)\n(.*?)@@RK-END", text, re.S):
        p = out / m[2]
        p.parent.mkdir(parents=True, exist_ok=True)
        body = m[3]
        p.write_bytes(base64.b64decode("".join(body.split())) if m[1] else body.encode("latin-1"))


if __name__ == "__main__":
    main()
