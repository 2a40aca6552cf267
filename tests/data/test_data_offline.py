"""Offline and flaky networks: a host that does not resolve is not retried, every retry is
announced with when it happens, and a download that got nothing leaves the dataset missing."""

from __future__ import annotations

import socket

import pytest

from fgbench import cli
from fgbench.data import catalog, download
from fgbench.data.catalog import Source
from fgbench.data.download import DownloadError

HOSTS = ("data.example.invalid", "mirror.example.invalid")


@pytest.fixture
def offline(monkeypatch, patch_entry):
    """cub200 points at two hosts, and no host name resolves (as on a machine without network).
    Returns the host names looked up, in order."""
    looked_up: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv("FGBENCH_MIRROR_CUB200", raising=False)
    patch_entry("cub200", sources=(Source(f"http://{HOSTS[0]}/CUB_200_2011.tgz", "CUB_200_2011.tgz", md5="0" * 32,
                                          size=1000, alternates=(f"http://{HOSTS[1]}/CUB_200_2011.tgz",)),))
    return looked_up


def test_no_host_resolves_fails_at_once_names_the_hosts_and_leaves_missing(offline, monkeypatch):
    def no_sleep(s):
        raise AssertionError(f"slept {s} s before retrying a host that does not resolve")

    monkeypatch.setattr(download.time, "sleep", no_sleep)
    seen = []
    with pytest.raises(DownloadError) as err:
        download.download_dataset("cub200", progress=seen.append, retries=4)
    msg = str(err.value)
    assert offline == list(HOSTS), "each host is looked up once, not retried"
    assert "no host could be resolved" in msg
    assert all(f"cannot resolve {h}" in msg for h in HOSTS)
    assert "fgbench data import cub200" in msg
    assert any("trying the next address" in p.message for p in seen)
    assert catalog.status("cub200") == "missing"
    assert not catalog.location("cub200").exists()


def test_cli_offline_download_says_so_and_data_list_shows_missing(offline, capsys):
    code = cli.main(["data", "download", "cub200"])
    _out, err = capsys.readouterr()
    assert code == 1
    assert "no host could be resolved, this machine looks offline" in err
    assert "fgbench data import cub200" in err
    assert cli.main(["data", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cub200 "))
    assert line.split()[5] == "missing"  # name, classes, images, size (2 words), status


def test_each_retry_is_announced_with_its_number_and_delay(server, patch_entry, monkeypatch):
    monkeypatch.setattr(download, "RETRY_DELAYS_S", (0.0, 0.0))
    server.status["/busy/CUB_200_2011.tgz"] = 503
    patch_entry("cub200", sources=(Source(server.url("/busy/CUB_200_2011.tgz"), "CUB_200_2011.tgz", md5="0" * 32,
                                          size=1000),))
    monkeypatch.delenv("FGBENCH_MIRROR_CUB200", raising=False)
    seen = []
    with pytest.raises(DownloadError, match="gave up after 2 retries"):
        download.download_dataset("cub200", progress=seen.append, retries=2)
    notices = [p.message for p in seen if "retry" in p.message]
    assert notices == ["cub200: CUB_200_2011.tgz: HTTP 503 Service Unavailable; retry 1 of 2 in 0 s",
                       "cub200: CUB_200_2011.tgz: HTTP 503 Service Unavailable; retry 2 of 2 in 0 s"]
    assert len(server.gets("/busy/CUB_200_2011.tgz")) == 3
    assert catalog.status("cub200") == "missing"
