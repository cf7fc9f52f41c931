"""Notebooks executed headless with nbclient: examples/psum.ipynb (the seed's session prints
four equal psum lines, one per rank), AsyncResult.wait_interactive in a kernel, and %px's
output streamed as it comes with one progress display."""
import re

import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def test_psum_notebook_prints_four_equal_sums():
    examples = ROOT / "examples"
    nb = nbformat.read(str(examples / "psum.ipynb"), as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(examples)}}).execute()
    print_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.strip() == "%px print(s)")
    text = "".join(o.get("text", "") for o in print_cell.outputs if o.output_type == "stream")
    lines = re.findall(r"^\[stdout:(\d+)\] (\S+)$", text, re.M)
    assert [int(r) for r, _ in lines] == [0, 1, 2, 3], text
    values = {v for _, v in lines}
    assert len(values) == 1, text
    assert 0 < float(values.pop()) < 400


def test_wait_interactive_in_a_kernel_updates_one_display(cluster, tmp_path):
    """In a Jupyter kernel, wait_interactive shows its progress as one display updated in
    place (no terminal control characters) and the stuck message once, as a stream line."""
    failing = "from mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 0: 1/0\nc.Barrier()"
    allreduce = "from mpi4py import MPI\nMPI.COMM_WORLD.allreduce(1)"
    free_when_stuck = "\n".join([
        "import threading, time",
        "ar = rc[:].execute(%r)" % failing,
        "def free():",
        "    t0 = time.monotonic()",
        "    while not ar.stuck and time.monotonic() - t0 < 60:",
        "        time.sleep(0.05)",
        "    time.sleep(0.3)",
        "    ar.interrupt()",
        "threading.Thread(target=free, daemon=True).start()",
        "done = ar.wait_interactive(interval=0.05, timeout=120)",
    ])
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import mpx\nrc = mpx.Client(cluster_id=%r)" % cluster.cluster_id),
        nbformat.v4.new_code_cell(free_when_stuck),
        nbformat.v4.new_code_cell("print(done, sorted(ar.results_so_far()))"),
        nbformat.v4.new_code_cell("rc[:].execute(%r).get(60)" % allreduce),
    ]
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(nb, timeout=180, kernel_name="python3", resources=resources).execute()
    outputs = nb.cells[1].outputs
    displays = [o for o in outputs if o.output_type == "display_data"]
    assert len(displays) == 1, outputs
    assert re.fullmatch(r"4/4 engines done after \d+ s", displays[0].data["text/plain"]), displays
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "\r" not in streams
    stuck = [line for line in streams.splitlines() if line.startswith("mpx: ")]
    assert len(stuck) == 1 and "blocked in Barrier" in stuck[0] and "waiting for rank 0" in stuck[0], streams
    assert "".join(o.get("text", "") for o in nb.cells[2].outputs) == "True [0, 1, 2, 3]\n"
    assert nb.cells[3].outputs[0].data["text/plain"].count(": 4>") == 4


class _TimedClient(NotebookClient):
    """Keeps, beside the notebook, when the kernel sent each output: ``sent`` is a list of
    ``(cell index, the message's date, output)``."""

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None:
            self.sent.append((cell_index, msg["header"]["date"], out))
        return out


def test_px_output_streams_per_engine_with_one_progress_display(cluster, tmp_path):
    """In a notebook, %px shows each engine's output as it comes (a cell that prints, sleeps
    and prints again records its first line well before its last), and the progress of a long
    cell is one display updated in place, not a stream output per tick."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%%load_ext mpx\nimport mpx\nmpx.Client(cluster_id=%r).activate()" % cluster.cluster_id
        ),
        nbformat.v4.new_code_cell("%px import time"),
        nbformat.v4.new_code_cell("%px for i in range(3): print(i); time.sleep(1.2)"),
        nbformat.v4.new_code_cell("%px --group-outputs print('same')"),
    ]
    resources = {"metadata": {"path": str(tmp_path)}}
    client = _TimedClient(nb, timeout=180, kernel_name="python3", resources=resources)
    client.sent = []
    client.execute()
    outputs = nb.cells[2].outputs
    streams = [(date, o.text) for cell, date, o in client.sent if cell == 2 and o.output_type == "stream"]
    text = "".join(t for _, t in streams)
    assert "\r" not in text, outputs
    lines = re.findall(r"^\[stdout:(\d)\] (\d)$", text, re.M)
    assert sorted(lines) == sorted((str(e), str(i)) for e in range(4) for i in range(3)), text
    first = next(date for date, t in streams if "[stdout:0] 0" in t)
    last = next(date for date, t in streams if "[stdout:0] 2" in t)
    assert (last - first).total_seconds() > 1.5, streams
    displays = [o for o in outputs if o.output_type == "display_data"]
    assert len(displays) <= 1, outputs
    assert all(o.output_type in ("stream", "display_data") for o in outputs), outputs
    # Grouped outputs need each engine's whole output: not streamed.
    assert "".join(o.get("text", "") for o in nb.cells[3].outputs) == "[stdout:0-3] same\n"
