"""Host List Detection parsing speed: our parser against the fastest plain parsers.

Run: ``python -m benchmarks.parsers [--hosts 2000] [--detections 50] [--rss-gb 1.0]``.

One run generates a realistic Host List Detection document (CDATA fields, QDS with attributes,
RESULTS from a few bytes to several KB with tabs and newlines) and measures, on the same bytes:

- the floor: the fastest ways we know to turn that document into one plain dict of strings per
  DETECTION, each serialised with ``orjson.dumps`` (lxml pull parser, pyexpat, the standard
  library's ElementTree pull parser, xmltodict);
- ours: ``parse_host_list_detection`` (typed, validated records) + ``orjson.dumps``.

Each candidate runs several times, interleaved, and keeps its best time, so the machine's noise
hits all of them alike. Peak RSS is measured in a fresh subprocess that parses a generated
response of ``--rss-gb`` gigabytes streamed in 64 KiB chunks (never held in memory).
"""

from __future__ import annotations

import argparse
import pyexpat
import random
import resource
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator

import orjson
import xmltodict
from lxml import etree

from tap_qualys.qualys_xml import parse_host_list_detection

CHUNK = 64 * 1024

_HEADER = (
    b'<?xml version="1.0" encoding="UTF-8" ?>\n'
    b"<!DOCTYPE HOST_LIST_VM_DETECTION_OUTPUT SYSTEM "
    b'"https://qualysapi.qualys.com/api/2.0/fo/asset/host/vm/detection/'
    b'host_list_vm_detection_output.dtd">\n'
    b"<HOST_LIST_VM_DETECTION_OUTPUT>\n  <RESPONSE>\n"
    b"    <DATETIME>2026-11-23T10:00:00Z</DATETIME>\n    <HOST_LIST>\n"
)
_FOOTER = b"    </HOST_LIST>\n  </RESPONSE>\n</HOST_LIST_VM_DETECTION_OUTPUT>\n"
_STATUSES = ("New", "Active", "Active", "Active", "Fixed", "Re-Opened")
_VECTOR = "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
_QDS = (("LOW", 12), ("MEDIUM", 45), ("HIGH", 87), ("CRITICAL", 96))


def _results(rng: random.Random) -> str:
    size = rng.choice((0, 0, 60, 200, 800, 2500, 8000))
    if not size:
        return ""
    line = "%s\t%d.%d.%d\tC:\\Program Files\\Vendor\\lib%d.dll\n"
    lines = [
        line % (rng.choice(("openssl", "libcurl", "kernel")), rng.randint(1, 9), 0, i, i)
        for i in range(max(1, size // 48))
    ]
    return "Package\tInstalled Version\tPath\n" + "".join(lines)


def _host(host_index: int, detections: int, rng: random.Random) -> bytes:
    host_id = 100000 + host_index
    parts = [
        f"""      <HOST>
        <ID>{host_id}</ID>
        <ASSET_ID>{5000000 + host_index}</ASSET_ID>
        <IP>10.{host_index // 65536 % 256}.{host_index // 256 % 256}.{host_index % 256}</IP>
        <TRACKING_METHOD>IP</TRACKING_METHOD>
        <OS><![CDATA[Windows Server 2019 Datacenter 10.0.17763]]></OS>
        <DNS><![CDATA[host-{host_id}.corp.example.com]]></DNS>
        <DNS_DATA>
          <HOSTNAME><![CDATA[host-{host_id}]]></HOSTNAME>
          <DOMAIN><![CDATA[corp.example.com]]></DOMAIN>
          <FQDN><![CDATA[host-{host_id}.corp.example.com]]></FQDN>
        </DNS_DATA>
        <NETBIOS><![CDATA[HOST{host_id}]]></NETBIOS>
        <LAST_SCAN_DATETIME>2026-11-20T03:12:45Z</LAST_SCAN_DATETIME>
        <LAST_VM_SCANNED_DATE>2026-11-20T03:12:45Z</LAST_VM_SCANNED_DATE>
        <LAST_VM_SCANNED_DURATION>1234</LAST_VM_SCANNED_DURATION>
        <DETECTION_LIST>
"""
    ]
    for index in range(detections):
        severity, qds = rng.choice(_QDS)
        status = rng.choice(_STATUSES)
        fixed = (
            "\n          <LAST_FIXED_DATETIME>2026-11-19T01:00:00Z</LAST_FIXED_DATETIME>"
            if status == "Fixed"
            else ""
        )
        parts.append(
            f"""          <DETECTION>
            <UNIQUE_VULN_ID>{host_id * 1000 + index}</UNIQUE_VULN_ID>
            <QID>{rng.randint(10000, 400000)}</QID>
            <TYPE>Confirmed</TYPE>
            <SEVERITY>{rng.randint(1, 5)}</SEVERITY>
            <PORT>{rng.choice((22, 80, 443, 445, 3389))}</PORT>
            <PROTOCOL>TCP</PROTOCOL>
            <SSL>{rng.randint(0, 1)}</SSL>
            <RESULTS><![CDATA[{_results(rng)}]]></RESULTS>
            <STATUS>{status}</STATUS>
            <FIRST_FOUND_DATETIME>2025-03-01T10:00:00Z</FIRST_FOUND_DATETIME>
            <LAST_FOUND_DATETIME>2026-11-20T03:12:45Z</LAST_FOUND_DATETIME>
            <QDS severity="{severity}">{qds}</QDS>
            <QDS_FACTORS>
              <QDS_FACTOR name="CVSS"><![CDATA[7.5]]></QDS_FACTOR>
              <QDS_FACTOR name="CVSS_version"><![CDATA[v3.x]]></QDS_FACTOR>
              <QDS_FACTOR name="epss"><![CDATA[0.{rng.randint(1000, 99999)}]]></QDS_FACTOR>
              <QDS_FACTOR name="CVSS_vector"><![CDATA[{_VECTOR}]]></QDS_FACTOR>
            </QDS_FACTORS>
            <TIMES_FOUND>{rng.randint(1, 500)}</TIMES_FOUND>
            <LAST_TEST_DATETIME>2026-11-20T03:12:45Z</LAST_TEST_DATETIME>
            <LAST_UPDATE_DATETIME>2026-11-20T03:30:00Z</LAST_UPDATE_DATETIME>{fixed}
            <IS_IGNORED>0</IS_IGNORED>
            <IS_DISABLED>0</IS_DISABLED>
            <LAST_PROCESSED_DATETIME>2026-11-20T03:30:00Z</LAST_PROCESSED_DATETIME>
          </DETECTION>
"""
        )
    parts.append("        </DETECTION_LIST>\n      </HOST>\n")
    return "".join(parts).encode()


def detection_document(hosts: int, detections: int, seed: int = 7) -> Iterator[bytes]:
    """A Host List Detection response, host by host."""
    rng = random.Random(seed)
    yield _HEADER
    for index in range(hosts):
        yield _host(index, detections, rng)
    yield _FOOTER


def huge_detection_document(target_bytes: int, detections: int = 50) -> Iterator[bytes]:
    """About ``target_bytes`` of detections, generated lazily from a pool of rendered hosts."""
    rng = random.Random(11)
    pool = [_host(index, detections, rng).replace(b"<ID>", b"<ID>@", 1) for index in range(64)]
    yield _HEADER
    produced = 0
    host_index = 0
    while produced < target_bytes:
        block = pool[host_index % len(pool)]
        # A distinct host id per block, so the parser sees a real sequence of hosts.
        chunk = block.replace(
            b"@" + str(100000 + host_index % len(pool)).encode(), b"%d" % (10**7 + host_index), 1
        )
        produced += len(chunk)
        host_index += 1
        yield chunk
    yield _FOOTER


def rechunk(blocks: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Fixed-size chunks, like ``response.iter_content(chunk_size=size)``."""
    buffer = bytearray()
    for block in blocks:
        buffer += block
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


# --- candidates: bytes chunks -> number of detections serialised ---------------------------------


def floor_lxml(chunks: list[bytes]) -> int:
    parser = etree.XMLPullParser(events=("end",), tag="DETECTION", resolve_entities=False)
    count = 0
    for chunk in chunks:
        parser.feed(chunk)
        for _, element in parser.read_events():
            record = {
                child.tag: [item.text for item in child] if len(child) else child.text
                for child in element
            }
            orjson.dumps(record)
            count += 1
            element.clear()
            parent = element.getparent()
            while element.getprevious() is not None:
                del parent[0]
    parser.close()
    return count


def floor_pyexpat(chunks: list[bytes]) -> int:
    parser = pyexpat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = CHUNK
    count = 0
    record: dict[str, object] | None = None
    text: list[str] = []
    factors: list[str] | None = None

    def start(name: str, _attributes: object) -> None:
        nonlocal record, factors
        if name == "DETECTION":
            record = {}
        elif name == "QDS_FACTORS":
            factors = []
        text.clear()

    def end(name: str) -> None:
        nonlocal record, count, factors
        if record is not None:
            if name == "DETECTION":
                orjson.dumps(record)
                count += 1
                record = None
            elif name == "QDS_FACTOR" and factors is not None:
                factors.append("".join(text))
            elif name == "QDS_FACTORS":
                record[name] = factors
                factors = None
            else:
                record[name] = "".join(text)
        text.clear()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    for chunk in chunks:
        parser.Parse(chunk, False)
    parser.Parse(b"", True)
    return count


def floor_elementtree(chunks: list[bytes]) -> int:
    # The standard library's C tree builder: elements are plain Python objects, no proxies.
    parser: ElementTree.XMLPullParser[ElementTree.Element]
    parser = ElementTree.XMLPullParser(events=("end",))
    count = 0
    for chunk in chunks:
        parser.feed(chunk)
        for event in parser.read_events():
            element = event[-1]
            assert isinstance(element, ElementTree.Element)  # "end" events carry elements
            if element.tag == "DETECTION":
                record = {
                    child.tag: [item.text for item in child] if len(child) else child.text
                    for child in element
                }
                orjson.dumps(record)
                count += 1
            elif element.tag == "HOST":
                element.clear()  # its DETECTIONs are done
    parser.close()
    return count


def floor_xmltodict(chunks: list[bytes]) -> int:
    count = 0

    def item(path: list[tuple[str, object]], detection: object) -> bool:
        nonlocal count
        if path[-1][0] == "DETECTION":  # DNS_DATA's children sit at the same depth
            orjson.dumps(detection)
            count += 1
        return True

    # HOST_LIST_VM_DETECTION_OUTPUT/RESPONSE/HOST_LIST/HOST/DETECTION_LIST/DETECTION
    xmltodict.parse((chunk for chunk in chunks), item_depth=6, item_callback=item)
    return count


def ours(chunks: list[bytes]) -> int:
    count = 0
    for record in parse_host_list_detection(chunks):
        orjson.dumps(record)
        count += 1
    return count


FLOORS: dict[str, Callable[[list[bytes]], int]] = {
    "lxml XMLPullParser (floor candidate)": floor_lxml,
    "pyexpat (floor candidate)": floor_pyexpat,
    "ElementTree XMLPullParser (floor candidate)": floor_elementtree,
    "xmltodict streaming (floor candidate)": floor_xmltodict,
}


def measure(hosts: int, detections: int, rounds: int) -> tuple[dict[str, float], int, int]:
    chunks = list(rechunk(detection_document(hosts, detections)))
    size = sum(map(len, chunks))
    expected = hosts * detections
    candidates = {**FLOORS, "ours: parse_host_list_detection": ours}
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, run in candidates.items():
            started = time.perf_counter()
            count = run(chunks)
            elapsed = time.perf_counter() - started
            if count != expected:
                msg = f"{name} produced {count} detections, expected {expected}"
                raise RuntimeError(msg)
            best[name] = min(best.get(name, elapsed), elapsed)
    return {name: expected / elapsed for name, elapsed in best.items()}, size, expected


def peak_rss_child(gigabytes: float) -> None:
    """Subprocess body: parse a streamed response of ``gigabytes`` and print count and peak RSS."""
    count = 0
    for record in parse_host_list_detection(rechunk(huge_detection_document(int(gigabytes * 1e9)))):
        orjson.dumps(record)
        count += 1
    print(f"{count} {_peak_rss_kib()}")


def _peak_rss_kib() -> int:
    # VmHWM belongs to this process image. ru_maxrss would also count the pages inherited from
    # the benchmark parent at fork time (Linux keeps the high-water mark across exec).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss(gigabytes: float) -> tuple[int, float, float]:
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.parsers", "--rss-child", str(gigabytes)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(output[0]), int(output[1]) / 1024, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--hosts", type=int, default=2000)
    options.add_argument("--detections", type=int, default=50)
    options.add_argument("--rounds", type=int, default=3)
    options.add_argument("--rss-gb", type=float, default=1.0, help="0 skips the RSS run")
    options.add_argument("--rss-child", type=float, help=argparse.SUPPRESS)
    args = options.parse_args(argv)
    if args.rss_child is not None:
        peak_rss_child(args.rss_child)
        return

    rates, size, count = measure(args.hosts, args.detections, args.rounds)
    floor_name = max(FLOORS, key=lambda name: rates[name])
    floor = rates[floor_name]
    print(
        f"Host List Detection: {args.hosts} hosts x {args.detections} detections = {count} "
        f"detections, {size / 1e6:.0f} MB, best of {args.rounds} rounds\n"
    )
    print("| parser | detections/s | MB/s | ratio to floor |")
    print("|---|---:|---:|---:|")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        mark = " **(floor)**" if name == floor_name else ""
        print(
            f"| {name}{mark} | {rate:,.0f} | {rate * size / count / 1e6:.1f} | {rate / floor:.2f} |"
        )
    if args.rss_gb:
        detections, peak_mib, elapsed = peak_rss(args.rss_gb)
        print(
            f"\nPeak RSS parsing a streamed {args.rss_gb:g} GB response with ours: "
            f"**{peak_mib:.0f} MiB** ({detections:,} detections in {elapsed:.0f} s)"
        )


if __name__ == "__main__":
    main()
