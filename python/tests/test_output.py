"""Output as it arrives: the pieces kept beside the results (mpx._output), the lines %px shows
as they come (mpx._display.LiveLines), the progress display in a notebook (mpx._progress),
and a request's streamed output, which its results keep all the same."""
import sys
import time
import types

from mpx import _display, _output, _progress


def test_live_lines_show_whole_lines_once_in_engine_order():
    live = _display.LiveLines()
    texts = {(1, "stdout"): "b1\nb2 part", (0, "stderr"): "warn\n", (0, "stdout"): "a1\n"}
    assert live.lines(texts, done=set()) == ["[stdout:0] a1", "[stderr:0] warn", "[stdout:1] b1"]
    assert live.lines(texts, done=set()) == []
    texts[(1, "stdout")] += "ial\nb3"
    assert live.lines(texts, done=set()) == ["[stdout:1] b2 partial"]
    # Done: its last line, unfinished, too.
    assert live.lines(texts, done={1}) == ["[stdout:1] b3"]
    assert live.lines(texts, done={0, 1}) == []


class _FakeStream:
    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.closed = False

    def next(self, timeout=0.0):
        taken, self.pieces = self.pieces, []
        return taken

    def close(self):
        self.closed = True


class _FakeRaw:
    def __init__(self, pieces):
        self.stream = _FakeStream(pieces)

    def output(self):
        return self.stream


def test_streamed_output_goes_back_in_front_of_each_result():
    raw = _FakeRaw([(0, "stdout", "a "), (1, "stderr", "oops\n"), (0, "stdout", "b\n")])
    streamed = _output.Streamed()
    waited = []
    assert not streamed.read(0.1, waited.append)  # not open: at once, without waiting
    assert waited == []
    streamed.open([raw])
    assert streamed.opened and streamed.read(0.1, waited.append) and waited == [0.1]
    results = [{"engine_id": 0, "stdout": "", "stderr": ""}, {"engine_id": 1, "stdout": "late\n", "stderr": ""}]
    assert streamed.texts([]) == {(0, "stdout"): "a b\n", (1, "stderr"): "oops\n"}
    raw.stream.pieces.append((1, "stdout", "early\n"))
    streamed.close()
    assert raw.stream.closed and not streamed.read(0.1, waited.append)
    merged = streamed.merge(results)
    assert [(r["stdout"], r["stderr"]) for r in merged] == [("a b\n", ""), ("early\nlate\n", "oops\n")]
    assert results[1]["stdout"] == "late\n"  # the raw dicts stay as they were
    assert streamed.texts(merged)[(1, "stdout")] == "early\nlate\n"


def test_streamed_output_is_kept_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(_output, "KEEP", 10)
    raw = _FakeRaw([(0, "stdout", "12345678"), (0, "stdout", "abcdef")])
    streamed = _output.Streamed()
    streamed.open([raw])
    streamed.read(0.0, lambda t: None)
    text = streamed.texts([])[(0, "stdout")]
    assert text.startswith("12345678ab\n[mpx: 4 more characters of stdout were not kept"), text


class _FakeWidget:
    def __init__(self, **state):
        self.__dict__.update(state)
        self.layout = types.SimpleNamespace(display=None)


def test_progress_in_a_notebook_is_one_widget_when_ipywidgets_is_installed(monkeypatch):
    """With ipywidgets, the progress is one widget display (a bar and a label) updated in
    place, whose text for viewers without widgets is the last."""
    shown = []

    class Handle:
        def update(self, data, raw=False):
            shown.append(("update", data))

    def display(data, raw=False, display_id=False):
        shown.append(("display", data))
        return Handle()

    box = _FakeWidget()
    box._repr_mimebundle_ = lambda: {"text/plain": "HBox(...)", "application/vnd.jupyter.widget-view+json": {}}
    widgets = types.SimpleNamespace(IntProgress=_FakeWidget, Label=_FakeWidget, HBox=lambda children: box)
    monkeypatch.setitem(sys.modules, "ipywidgets", widgets)
    monkeypatch.setattr("IPython.display.display", display)
    line = _progress.ProgressLine(display=True)
    line.update("[px] 1/4 engines done", 1, 4)
    line.update("[px] 3/4 engines done", 3, 4)
    line.update("[px] done in 2.5 s", 4, 4)
    line.close()
    assert [kind for kind, _ in shown] == ["display", "update"]
    assert shown[0][1]["text/plain"] == "[px] 1/4 engines done"
    assert shown[1][1]["text/plain"] == "[px] done in 2.5 s"
    assert "application/vnd.jupyter.widget-view+json" in shown[1][1]
    bar, label = line._shown._bar, line._shown._label
    assert (bar.value, bar.max, label.value) == (4, 4, "[px] done in 2.5 s")


def test_a_streamed_request_keeps_its_output_in_its_results(rc):
    ar = rc[:].execute("import sys\nprint('out', 1)\nprint('err', file=sys.stderr)\n7")
    ar._stream_output()
    replies = ar.get(60)
    assert ar.stdout == ["out 1\n"] * 4 and ar.stderr == ["err\n"] * 4
    assert [r.stdout for r in replies] == ["out 1\n"] * 4 and [r.execute_result for r in replies] == ["7"] * 4
    assert not ar._read_output(1.0)  # closed once done: at once


def test_streamed_output_arrives_while_the_engines_run(rc):
    ar = rc[:].execute("import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('last')")
    ar._stream_output()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30 and len(ar._output_so_far()) < 4:
        ar._read_output(0.1)
    assert not ar.ready(), "the first lines came only at the end"
    assert set(ar._output_so_far().values()) == {"first\n"}
    ar.get(60)
    assert ar.stdout == ["first\nlast\n"] * 4
