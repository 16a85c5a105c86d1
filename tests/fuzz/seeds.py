"""Writes the seed corpora in tests/fuzz/corpus/ (deterministic; rerun after changing a target's input format).

    python -m tests.fuzz.seeds

Seeds are small valid inputs of every kind a boundary accepts, so the fuzzer starts from deep
inside each parser instead of having to discover the file signatures first.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def image_seeds() -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    out: list[bytes] = []

    def save(img: Image.Image, fmt: str, **kwargs: object) -> None:
        buf = io.BytesIO()
        img.save(buf, fmt, **kwargs)
        out.append(buf.getvalue())

    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"):
        save(rgb, fmt)
    save(rgb.convert("L"), "PNG")
    save(rgb.convert("RGBA"), "PNG")
    save(rgb.convert("P"), "PNG", transparency=0)  # palette with a transparent index
    save(rgb.convert("RGBA"), "WEBP", lossless=True)
    save(rgb.convert("CMYK"), "JPEG")
    save(rgb.convert("CMYK"), "TIFF")
    save(Image.fromarray((np.arange(192, dtype=np.uint16) * 300).reshape(12, 16)), "PNG")  # 16-bit gray
    save(Image.fromarray((np.arange(192, dtype=np.uint16) * 300).reshape(12, 16)), "TIFF")
    save(rgb, "TIFF", compression="tiff_lzw")
    save(rgb, "TIFF", compression="tiff_adobe_deflate", dpi=(72.5, 72.5))  # rational tags
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated a quarter turn
    save(rgb, "JPEG", exif=exif.tobytes())
    save(rgb, "PNG", exif=exif.tobytes())
    save(rgb, "TIFF", exif=exif)
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    save(frames[0], "PNG", save_all=True, append_images=frames[1:])  # APNG
    save(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    out.append(small_tiff())
    return out


def small_tiff() -> bytes:
    """Issue 21's case: 1,313 bytes declaring 23 x 1,376,273 px (31.7 Mpx, under the 40 Mpx limit), one deflate
    strip cut short. It must be refused from its header, never decoded."""
    import struct
    import zlib

    width, height = 23, 1_376_273
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0), (277, 3, 1),
               (278, 4, height), (279, 4, 0)]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    payload = zlib.compress(bytes(width * height), 9)[:1313 - data_offset]
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, value in entries:
        value = {273: data_offset, 279: len(payload)}.get(tag, value)
        out += struct.pack("<HHIHH", tag, kind, 1, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, 1, value)
    return bytes(out + struct.pack("<I", 0) + payload)


DIALECT = [
    '<think>The photo shows a shuttle crew.</think>\n<tool_call>{"name": "image_search", "arguments": '
    '{"image_paths": ["<image 1>"]}}</tool_call>',
    '<think>two at once</think><tool_call>{"name": "text_search", "arguments": {"queries": ["STS-93 commander"]}}'
    '</tool_call><tool_call>{"name": "web_visit", "arguments": "{\\"urls\\": [\\"https://example.org\\"], '
    '\\"goal\\": \\"commander\\"}"}</tool_call>',
    '<tool_call>{"name": "code", "arguments": {"code": "save(image[100:200, 50:150])"}}</tool_call>',
    '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [100, 200, 500, 700], "img_idx": 0, '
    '"label": "face"}}</tool_call>',
    '<tool_call>{"name": "crop", "arguments": {"image": "<sub-image 1>", "bbox": [0.1, 0.2, 0.5, 0.6], '
    '"coords": "normalized"}}</tool_call>',
    '<think>tag form</think><text_search>first woman shuttle commander</text_search>'
    '<image_search><image 1></image_search><web_content>https://example.org/eileen</web_content>',
    '<code>\n```python\nimport cv2\nsave(cv2.resize(image, None, fx=2, fy=2))\n```\n</code>',
    '<think>done</think><answer>Eileen Collins; STS-93 (1999).</answer>',
    '<plan>[{"description": "find the person", "tool_name": "image_search", "parameters": {"image_path": '
    '"<image 1>"}}, {"description": "first mission of [Person from Step 1]", "tool_name": "text_search", '
    '"parameters": {"query": "[Person from Step 1] first command"}}, {"description": "verify", '
    '"tool_name": "none", "parameters": {}}]</plan>',
    '<tool_call>{"name": "text_search", "arguments": {"queries": [1, 2]}</tool_call><answer>x',
    '<tool_call>{"name": "rotate", "arguments": {"image": "<image 1>", "angle": 1e308, "fill": "#ff00ff"}}'
    '</tool_call>',
    '<tool_call>{"name": "draw", "arguments": {"image": "<image 1>", "marks": [{"kind": "box", '
    '"xy": [1, 2, 3, 4], "label": "a"}]}}</tool_call>',
]


def request_seeds() -> list[bytes]:
    from toolfabric.v1 import fabric_pb2 as pb

    png = image_seeds()[0]
    requests = [
        pb.RunRequest(question="Who is this?", images=[pb.ImageInput(data=png)]),
        pb.RunRequest(question="What is it?", mode=pb.MODE_PLAN, model="r1v4",
                      budgets=pb.Budgets(max_steps=4, max_tool_calls=8, deadline_s=30.0),
                      sampling=pb.SamplingParameters(temperature=0.2, top_p=0.9, top_k=20, max_tokens=512, seed=1)),
        pb.RunRequest(question="From a URL", images=[pb.ImageInput(url="https://93.184.216.34/photo.jpg")]),
        pb.RunRequest(question="Private", images=[pb.ImageInput(url="http://0x7f.1/x.png")]),
        pb.RunRequest(question=" ", budgets=pb.Budgets(max_steps=-1, deadline_s=float("nan"))),
    ]
    return [r.SerializeToString() for r in requests]


def page_seeds() -> list[bytes]:
    import gzip
    import zlib

    article = (
        "<!doctype html><html><head><meta charset='windows-1252'><title>Eileen Collins</title>"
        "<base href='https://example.org/wiki/'><meta property='og:title' content='Collins'></head><body>"
        "<nav><a href='/'>home</a></nav><main><article><h1>Eileen Collins</h1>"
        "<p>Eileen Collins was the first woman to command a Space Shuttle mission, STS-93 in 1999.</p>"
        "<figure><img src='collins.jpg' width='300'><figcaption>Collins in 1999</figcaption></figure>"
        "<table><tr><th>Mission</th><th>Year</th></tr><tr><td>STS-63</td><td>1995</td></tr></table>"
        "<ul><li>pilot</li><li>commander</li></ul><p>" + "Shuttle astronaut history. " * 60 + "</p>"
        "</article></main></body></html>"
    )
    out = [
        b"text/html; charset=utf-8\n\n" + article.encode("cp1252"),
        b"text/html\ngzip\n" + gzip.compress(article.encode()),
        b"text/html\ndeflate\n" + zlib.compress(article.encode())[2:-4],  # raw deflate, as some servers send
        b"application/octet-stream\n\n" + article.encode(),
        b"text/plain; charset=iso-8859-1\n\n" + "Caf\u00e9 cr\u00e8me\n\n# Heading\n\nMore text.\n".encode("latin-1"),
        b"text/plain\n\n" + "\ufeff# Notes\n\n".encode("utf-16"),
        b"text/markdown\n\n" + ("## Section\n\n" + "A sentence about shuttles. " * 80 + "\n\n").encode() * 3,
        b"application/xhtml+xml; charset=shift_jis\n\n<?xml version='1.0' encoding='shift_jis'?><html><body><p>"
        + "\u5b87\u5b99\u98db\u884c\u58eb".encode("shift_jis") + b"</p></body></html>",
    ]
    return out


def pdf_seeds() -> list[bytes]:
    from tests.fetch.pdfs import make_pdf

    return [
        make_pdf(["Eileen Collins commanded STS-93."], title="Collins"),
        make_pdf([f"Page {i} about the shuttle program." for i in range(1, 4)]),
        make_pdf(["(parentheses) and \\ backslashes"], title=""),
    ]


def chat_seeds() -> list[bytes]:
    """Bodies as R1V4's clients send them: data-URL images beside text parts, streamed or not, search on or off."""
    import base64
    import json

    png = "data:image/png;base64," + base64.b64encode(image_seeds()[0]).decode()
    user = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png}},
                                        {"type": "text", "text": "Who is this, and what was her first mission?"}]}
    bodies: list[dict[str, object]] = [
        {"model": "skywork/r1v4-lite", "messages": [user], "stream": True, "enable_search": True},
        {"model": "skywork/r1v4-lite-general", "stream": False, "temperature": 0.6, "top_p": 0.95, "max_tokens": 1024,
         "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello"}]},
        {"model": "skywork/r1v4-vl-planner-lite", "messages": [user], "stream": True,
         "stream_options": {"include_usage": True}, "enable_search": False, "seed": 7, "n": 1},
        {"model": "skywork/r1v4-lite", "messages": [
            user, {"role": "assistant", "content": "<think>a shuttle crew</think><answer>Eileen Collins</answer>"},
            {"role": "user", "content": [{"type": "text", "text": "And her second?"},
                                         {"type": "image_url", "image_url": "https://93.184.216.34/p.jpg"}]}],
         "toolfabric": {"max_steps": 4, "max_tool_calls": 8, "deadline_s": 30.0, "conversation_id": "c-1"}},
        {"model": "skywork/r1v4-lite", "messages": [{"role": "user", "content": "x"}],
         "toolfabric": {"parent_trajectory_id": "t-1"}, "max_completion_tokens": 64, "top_k": 20},
        {"model": "gpt-4o", "messages": [{"role": "tool", "content": "42"}]},
    ]
    return [json.dumps(body).encode() for body in bodies]


def step_seeds() -> list[bytes]:
    """verl-tool's parallel lists (first byte even: the HTTP door) and the same as a gRPC StepRequest (odd)."""
    import base64
    import json

    from toolfabric.v1 import fabric_pb2 as pb

    b64 = base64.b64encode(image_seeds()[0]).decode()
    actions = ['<think>look closer</think><tool_call>{"name": "image_zoom_in_tool", "arguments": '
               '{"bbox_2d": [1, 2, 8, 9], "img_idx": 0}}</tool_call>', "<answer>Eileen Collins</answer>"]
    bodies: list[dict[str, object]] = [
        {"trajectory_ids": ["t-1", "t-2"], "actions": actions, "finish": [False, False],
         "is_last_step": [False, True], "extra_fields": [
             {"images": [f"data:image/png;base64,{b64}"], "question": "Who is this?", "mode": "deep_research"},
             {"images": [b64, "https://93.184.216.34/p.png"], "model": "r1v4", "mode": "general"}]},
        {"trajectory_ids": ["t-3"], "actions": [""], "finish": [True]},
        {"trajectory_ids": ["t-4", "t-4"], "actions": ["a", "b"], "extra_fields": [None, {"mode": "plan"}]},
    ]
    out = [b"J" + json.dumps(body).encode() for body in bodies]
    request = pb.StepRequest(actions=[
        pb.StepAction(trajectory_id="t-1", action=actions[0], images=[pb.ImageInput(data=image_seeds()[0])],
                      question="Who is this?", mode=pb.MODE_DEEP_RESEARCH, model="r1v4"),
        pb.StepAction(trajectory_id="t-2", action=actions[1], is_last_step=True, finish=False),
        pb.StepAction(trajectory_id="t-3", finish=True)])
    return [*out, b"G" + request.SerializeToString()]


def door_seeds() -> list[bytes]:
    key = "tfk_0123456789ab_" + "k" * 43
    headers = ["", f"Bearer {key}", "Bearer", "bearer  x", "Basic Zm9vOmJhcg==", "Bearer tfk_\u00e9",
               "Bearer " + "a" * 300]
    seeds = [bytes([n]) + h.encode() + b"\n/get_observation" for n, h in enumerate(headers)]
    # gRPC methods of Fabric, of a service added later, and of the open ones; blob URLs near a real one.
    seeds += [b"\x01" + h.encode() + b"\n" + m for h in headers[:2] for m in (
        b"/toolfabric.v1.Fabric/GetTrajectory", b"/toolfabric.v2.Admin/DropAll", b"/grpc.health.v1.Health/Check")]
    seeds += [b"\x02/blobs/" + b"ab" * 32 + q for q in (
        b"?exp=9999999999&sig=" + b"0" * 64, b"?exp=9999999999&t=acme&sig=" + b"0" * 64, b"?exp=x&sig=", b"")]
    return seeds


def write(target: str, seeds: list[bytes]) -> None:
    folder = CORPUS / target
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for seed in seeds:
        (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)  # libFuzzer's own naming


def main() -> None:
    write("images", image_seeds())
    write("dialect", [text.encode() for text in DIALECT])
    write("channels", [text.encode() for text in DIALECT])
    write("run_request", request_seeds())
    write("web_page", page_seeds())
    write("web_pdf", pdf_seeds())
    write("chat", chat_seeds())
    write("step", step_seeds())
    write("doors", door_seeds())


if __name__ == "__main__":
    main()
