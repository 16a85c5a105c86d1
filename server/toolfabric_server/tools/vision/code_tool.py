"""The `code` tool: the model's python on the trajectory's images, in the sandbox.

Inputs are written to the call directory as plain PNGs and raw arrays, the child's exit and report
are turned into either a result (output text, last value, new images) or an error named for
the limit or failure behind it.
"""

from __future__ import annotations

import signal

from toolfabric_server.common.errors import InvalidImage, ToolInternalError
from toolfabric_server.common.tools import NewImage, ToolContext, ToolResult
from toolfabric_server.tools.vision import errors
from toolfabric_server.tools.vision.sandbox import confine, protocol
from toolfabric_server.tools.vision.sandbox.client import Exit, Sandbox
from toolfabric_server.tools.vision.sandbox.workspace import Workspace, sandbox_root
from toolfabric_server.tools.vision.settings import VisionSettings
from toolfabric_server.tools.vision.spec import CodeArgs
from toolfabric_server.tools.vision.store import ImageStore, Vision

SANDBOX = Sandbox()


def code(args: CodeArgs, ctx: ToolContext, vision: Vision) -> ToolResult:
    return run_code(args.code, ctx, vision.store, SANDBOX, vision.cfg)


def check_layers(sandbox: Sandbox, cfg: VisionSettings) -> list[str]:
    """The isolation layers a call gets here; fails closed if a required one is missing."""
    layers = sandbox.layers() + confine.available_layers()
    missing = [r for r in cfg.sandbox_required_layers if not any(layer.startswith(r) for layer in layers)]
    if missing:
        raise errors.SandboxUnavailable(
            f"this worker cannot run code: required isolation {', '.join(missing)} is not available "
            f"(has: {', '.join(layers)})"
        )
    return layers


def run_code(source: str, ctx: ToolContext, store: ImageStore, sandbox: Sandbox, cfg: VisionSettings) -> ToolResult:
    check_layers(sandbox, cfg)
    workspace = Workspace(sandbox_root(cfg.sandbox_dir))
    try:
        inputs = [workspace.add_input(name, store.plain_png(ref, name), store.bgr(ref, name))
                  for name, ref in store.trajectory_images(ctx)]
        value_chars = cfg.sandbox_output_chars // 2
        request: protocol.Request = {
            "call_dir": str(workspace.call_dir), "code": source, "inputs": inputs,
            "cpu_s": cfg.sandbox_cpu_s, "memory_mb": cfg.sandbox_memory_mb,
            "file_size_mb": cfg.sandbox_file_size_mb, "max_processes": cfg.sandbox_max_processes,
            "max_output_images": cfg.max_output_images, "value_chars": value_chars,
            "png_max_pixels": cfg.png_max_pixels, "jpeg_quality": cfg.jpeg_quality,
            "uid_base": cfg.sandbox_uid_base,
        }
        ended = sandbox.run(request, cfg.sandbox_wall_s)
        report = workspace.result()
        value = _value_text(report, value_chars)
        output, _ = workspace.output_text(max(cfg.sandbox_output_chars - len(value), 100))
        report = _successful(ended, report, output, cfg)

        saved_names = {s["file"] for s in report["saved"]}
        files, problems = workspace.outputs(report["saved"], cfg.max_output_images, store.max_bytes)
        new_images: list[NewImage] = []
        for i, f in enumerate(files, 1):
            # save() without a label needs no note; a file the code named is worth naming.
            note = f.label or ("" if f.file in saved_names else f.file)
            origin = f"code output {i}" + (f" ({note})" if note else "")
            try:
                new_images.append(store.put(f.data, origin, verify=True))
            except InvalidImage as exc:
                problems.append(f"{f.file} was not returned: {exc}")
        text = _compose(output, value, new_images, problems)
        return ToolResult(text=text, images=new_images,
                          data={"type": "code", "result": text, "cpu_s": round(ended.cpu_s, 3)},
                          usage={"sandbox_cpu_s": round(ended.cpu_s, 3), "sandbox_wall_s": round(ended.wall_s, 3)})
    finally:
        workspace.remove()


def _value_text(report: protocol.ChildResult | None, budget: int) -> str:
    if report is None or report["value"] is None:
        return ""
    value = report["value"]
    if len(value) > budget:
        value = value[:budget] + f" … [value truncated to {budget} characters]"
    return value


def _compose(output: str, value: str, new_images: list[NewImage], problems: list[str]) -> str:
    parts = []
    if output.strip():
        parts.append(output.rstrip("\n"))
    if value:
        parts.append(value)
    if new_images:
        parts.append(f"[{len(new_images)} image(s) returned: " + "; ".join(
            f"{im.origin}, {im.width}x{im.height}" for im in new_images) + "]")
    parts.extend(f"[{p}]" for p in problems)
    return "\n".join(parts) if parts else "[the code ran and printed nothing]"


def _with_output(message: str, output: str) -> str:
    return f"{message}\n--- output before it stopped ---\n{output.rstrip()}" if output.strip() else message


def _successful(ended: Exit, report: protocol.ChildResult | None, output: str,
                cfg: VisionSettings) -> protocol.ChildResult:
    """The child's report if the code ran to its end; otherwise the error saying what stopped it."""
    if ended.killed_for_time:
        raise errors.SandboxWallTimeout(_with_output(
            f"the code ran longer than the {cfg.sandbox_wall_s:g} s wall-time limit and was killed", output))
    sig = ended.signal
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and ended.cpu_s >= cfg.sandbox_cpu_s):
        raise errors.SandboxCpuTimeout(_with_output(
            f"the code used more than its {cfg.sandbox_cpu_s} s of CPU time and was stopped", output))
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals.__members__.values() else str(sig)
        hint = " (possibly out of memory)" if sig == signal.SIGKILL else ""
        raise errors.SandboxKilled(_with_output(f"the code's process was killed by {name}{hint}", output))
    if report is None:
        if ended.code == 70:  # the runner's own exit status: confinement failed before any user code
            raise ToolInternalError(f"the sandbox could not be set up: {output.strip()[-500:]}")
        raise errors.CodeRaised(_with_output(
            f"the code ended (exit status {ended.code}) without finishing; do not call os._exit or close "
            "the sandbox's files", output))
    error = report["error"]
    if error is None:
        return report
    summary = f"{error.get('type', 'Exception')}: {error.get('message', '')}".rstrip(": ")
    trace = str(error.get("traceback", "")).rstrip()
    limit = error.get("limit")
    if limit == "memory":
        raise errors.SandboxMemoryExceeded(_with_output(
            f"the code ran out of memory (limit {cfg.sandbox_memory_mb} MB): {summary}", output))
    if limit == "processes":
        raise errors.SandboxProcessLimit(_with_output(
            f"the code hit the limit of {cfg.sandbox_max_processes} processes/threads: {summary}", output))
    if limit == "file_size":
        raise errors.SandboxFileSizeLimit(_with_output(
            f"the code wrote more than the {cfg.sandbox_file_size_mb} MB file-size limit to a file or its "
            f"printed output: {summary}", output))
    raise errors.CodeRaised(_with_output(f"the code raised {summary}\n{trace}", output))
