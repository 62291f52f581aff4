"""Stage `package`: a build's videos as one zip a learning management system takes.

Formats: `scorm12` and `scorm2004` (SCORM 2004 4th edition) with an `imsmanifest.xml`; `xapi`
with a `tincan.xml`, reporting to an LRS; `html`, the player alone. Every package holds the
same player (templates/package): each built language's video and WebVTT subtitles, a language
picker, the AI notice in words beside the video, what the learner watched, and the script's
`quiz:` when it has one. Nothing is fetched from elsewhere at run time.

What the LMS records:
- SCORM 1.2: `cmi.core.lesson_status` incomplete -> completed once `complete_at` of the video
  is watched; with a quiz, passed/failed and `cmi.core.score.raw` (0-100, `masteryscore` the
  pass mark); `cmi.suspend_data` keeps what was watched across sessions.
- SCORM 2004: `cmi.completion_status` and `cmi.progress_measure` (the manifest's
  `completionThreshold`), `cmi.success_status` and `cmi.score.scaled` (the primary objective's
  `minNormalizedMeasure` is the pass mark).
- xAPI: `experienced` on the first play, `completed`, then `passed` or `failed` with the score.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import yaml

from stages import languages
from stages.assets import atomic_path
from stages.errors import SopreelError
from stages.manifest import read_manifest, unreadable_manifest
from stages.paths import TEMPLATES
from stages.script import LoadedScript, load_script

PLAYER = TEMPLATES / "package"
Format = Literal["scorm12", "scorm2004", "xapi", "html"]
FORMATS: tuple[str, ...] = ("scorm12", "scorm2004", "xapi", "html")

NS_12 = {"": "http://www.imsproject.org/xsd/imscp_rootv1p1p2",
         "adlcp": "http://www.adlnet.org/xsd/adlcp_rootv1p2"}
NS_2004 = {"": "http://www.imsglobal.org/xsd/imscp_v1p1",
           "adlcp": "http://www.adlnet.org/xsd/adlcp_v1p3",
           "adlseq": "http://www.adlnet.org/xsd/adlseq_v1p3",
           "adlnav": "http://www.adlnet.org/xsd/adlnav_v1p3",
           "imsss": "http://www.imsglobal.org/xsd/imsss"}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMAS_12 = ("http://www.imsproject.org/xsd/imscp_rootv1p1p2 imscp_rootv1p1p2.xsd "
              "http://www.adlnet.org/xsd/adlcp_rootv1p2 adlcp_rootv1p2.xsd")
SCHEMAS_2004 = ("http://www.imsglobal.org/xsd/imscp_v1p1 imscp_v1p1.xsd "
                "http://www.adlnet.org/xsd/adlcp_v1p3 adlcp_v1p3.xsd "
                "http://www.adlnet.org/xsd/adlseq_v1p3 adlseq_v1p3.xsd "
                "http://www.adlnet.org/xsd/adlnav_v1p3 adlnav_v1p3.xsd "
                "http://www.imsglobal.org/xsd/imsss imsss_v1p0.xsd")


@dataclass(frozen=True)
class PackageOptions:
    format: Format
    complete_at: float = 0.95          # share of the video watched that completes it
    require_full_watch: bool = False   # no seeking past what was not watched
    lrs_endpoint: str | None = None    # xAPI: where statements go unless the launch says
    lrs_auth: str | None = None        # xAPI: its Authorization header; $SOPREEL_LRS_AUTH
    activity_id: str | None = None     # xAPI: the activity's IRI (default urn:sopreel:<id>)
    only: list[str] | None = None      # languages to include; None: every one built

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise SopreelError(f"Unknown package format {self.format!r}; expected one of: "
                               f"{', '.join(FORMATS)}")
        if not 0 < self.complete_at <= 1:
            raise SopreelError("The share watched that completes the training must be above "
                               f"0 and at most 100%, got {self.complete_at * 100:g}%")
        if self.lrs_endpoint and self.format != "xapi":
            raise SopreelError("An LRS is for the xapi format (SCORM reports to the LMS that "
                               "launches it)")

    @property
    def lrs(self) -> dict[str, str | None] | None:
        """Where xAPI statements go unless the launch says: the endpoint and its key (written
        into the package, so readable by whoever has it)."""
        if not self.lrs_endpoint:
            return None
        return {"endpoint": self.lrs_endpoint,
                "auth": self.lrs_auth or os.environ.get("SOPREEL_LRS_AUTH")}


@dataclass(frozen=True)
class Track:
    """One language in the package: where its files come from and go."""

    code: str
    name: str
    title: str
    video: Path
    vtt: Path
    notice: str
    duration_s: float


@dataclass(frozen=True)
class Package:
    path: Path
    format: str
    languages: list[str]
    size_bytes: int
    quiz_questions: int
    warnings: list[str] = field(default_factory=list)


def package_script(script: Path, outputs: Path, options: PackageOptions,
                   out: Path | None = None, voices: Path | str | None = None) -> Package:
    """`package` for the script at `script`, built into `outputs` (as `sopreel build --out`)."""
    loaded = load_script(script, voices=voices, allow_unreviewed=True)   # as it was built
    return package(loaded, outputs.absolute() / loaded.script.id, options, out)


def package(loaded: LoadedScript, out_dir: Path, options: PackageOptions,
            out: Path | None = None) -> Package:
    """Write the zip for the build of `loaded` in `out_dir` (OUT/<script id>): to `out`, or
    OUT/<script id>/<script id>-<format>.zip. Written to a temporary name, then renamed."""
    script = loaded.script
    warnings: list[str] = []
    tracks = built_tracks(loaded, out_dir, options.only, warnings)
    default = script.language if any(t.code == script.language for t in tracks) \
        else tracks[0].code
    quiz = quiz_config(loaded, [t.code for t in tracks], default, warnings)
    config = player_config(loaded, tracks, default, quiz, options)
    out = out or out_dir / f"{script.id}-{options.format}.zip"
    files = _player_files(config, tracks, default)
    media = {f"media/{t.code}.mp4": t.video for t in tracks} | \
        {f"media/{t.code}.vtt": t.vtt for t in tracks}
    names = [*files, *media]
    if options.format in ("scorm12", "scorm2004"):
        files["imsmanifest.xml"] = scorm_manifest(options.format, script.id,
                                                  config["title"], names, options, quiz)
    elif options.format == "xapi":
        files["tincan.xml"] = tincan_manifest(config["activityId"], config["title"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temp, zipfile.ZipFile(temp, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        for name, path in media.items():   # video is compressed already: stored
            archive.write(path, name, compress_type=zipfile.ZIP_STORED if name.endswith(".mp4")
                          else zipfile.ZIP_DEFLATED)
        archive.close()
        problems = verify_package(temp)
        if problems:   # never left in place: the temporary file is removed
            raise SopreelError("The package came out incomplete: " + "; ".join(problems))
    return Package(path=out, format=options.format, languages=[t.code for t in tracks],
                   size_bytes=out.stat().st_size,
                   quiz_questions=len(script.quiz.questions) if script.quiz else 0,
                   warnings=warnings)


def built_tracks(loaded: LoadedScript, out_dir: Path, only: list[str] | None,
                 warnings: list[str]) -> list[Track]:
    """Every built language (or those in `only`) from the build's manifest, its files there."""
    script_path = loaded.path
    manifest_path = out_dir / "manifest.json"
    manifest = read_manifest(manifest_path)
    if manifest is None:
        why = unreadable_manifest(out_dir) or f"there is no build of {script_path.name} in " \
            f"{out_dir.parent} ({manifest_path.name} not found)"
        raise SopreelError(f"{why}. Build it first: sopreel build {script_path.name} "
                           f"--out {out_dir.parent}")
    if manifest.script.get("sha256") != loaded.sha256:
        warnings.append(f"{script_path.name} changed since it was built; the package holds the "
                        "videos as built. Build again to include the change.")
    codes = list(manifest.outputs)
    if only:
        wanted = [languages.canonical(code) or code for code in only]
        missing = [code for code in wanted if code not in manifest.outputs]
        if missing:
            raise SopreelError(f"{', '.join(missing)} not built in {out_dir} (built: "
                               f"{', '.join(codes)}). Build it first: sopreel build "
                               f"{script_path.name} --lang {','.join(missing)}")
        codes = wanted
    tracks = []
    for code in codes:
        entry = manifest.outputs[code]
        video, vtt = out_dir / entry.video, out_dir / entry.vtt
        for path in (video, vtt):
            if not path.is_file():
                raise SopreelError(f"{path} is missing: the {code} build is incomplete. Build "
                                   f"it again: sopreel build {script_path.name} --lang {code}")
        notice = (entry.notice or {}).get("text") or ""
        tracks.append(Track(code=code, name=languages.get(code).name,
                            title=loaded.title(code) or loaded.script.title, video=video,
                            vtt=vtt, notice=notice, duration_s=entry.duration_s))
    if not tracks:
        raise SopreelError(f"{manifest_path} lists no videos. Build first: sopreel build "
                           f"{script_path.name}")
    return tracks


def quiz_config(loaded: LoadedScript, codes: list[str], default: str,
                warnings: list[str]) -> dict[str, Any] | None:
    """The script's quiz for the player: questions per language (the script's own words where
    a translation has none, said in `warnings`), answers as choice numbers from 1."""
    quiz = loaded.script.quiz
    if quiz is None:
        return None
    original = [{"id": q.id, "question": q.question, "choices": q.choices,
                 "several": len(q.right) > 1} for q in quiz.questions]
    by_language: dict[str, list[dict[str, Any]]] = {}
    for code in codes:
        if code == loaded.script.language:
            by_language[code] = original
            continue
        block = loaded.translations.get(code)
        texts = block.quiz if block is not None else {}
        untranslated = [q["id"] for q in original if q["id"] not in texts]
        if untranslated:
            warnings.append(f"the quiz has no {code} text for {', '.join(untranslated)}; "
                            f"those questions are shown in {loaded.script.language}")
        by_language[code] = [
            {**q, "question": texts[q["id"]].question, "choices": texts[q["id"]].choices}
            if q["id"] in texts else q for q in original]
    by_language.setdefault(default, original)
    return {"passMark": quiz.pass_mark, "questions": by_language,
            "answers": {q.id: q.right for q in quiz.questions}}


def player_config(loaded: LoadedScript, tracks: list[Track], default: str,
                  quiz: dict[str, Any] | None, options: PackageOptions) -> dict[str, Any]:
    """What the player reads from its page: the tracks, the rules, the quiz, its own words."""
    strings = yaml.safe_load((PLAYER / "strings.yaml").read_text(encoding="utf-8"))
    script = loaded.script
    return {
        "format": options.format, "title": script.title, "defaultLanguage": default,
        "languages": [{"code": t.code, "name": t.name, "title": t.title,
                       "video": f"media/{t.code}.mp4", "vtt": f"media/{t.code}.vtt",
                       "notice": t.notice, "duration": t.duration_s} for t in tracks],
        "completeAt": options.complete_at, "requireFullWatch": options.require_full_watch,
        "quiz": quiz,
        "lrs": options.lrs,
        "activityId": options.activity_id or f"urn:sopreel:{script.id}",
        "strings": {code: strings[code] for code in strings
                    if code == "en" or any(t.code == code for t in tracks)},
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _player_files(config: dict[str, Any], tracks: list[Track],
                  default: str) -> dict[str, bytes]:
    """index.html with the configuration inside it (no request needed to read it), the script
    and the style sheet."""
    title = next(t.title for t in tracks if t.code == default)
    # Inside <script>, only "</" could end the element early: escaped as "<\/".
    embedded = json.dumps(config, ensure_ascii=False, indent=1).replace("</", "<\\/")
    page = ((PLAYER / "player.html").read_text(encoding="utf-8")
            .replace("{title}", escape(title)).replace("{lang}", escape(default))
            .replace("{config}", embedded))
    return {"index.html": page.encode("utf-8"),
            "player.js": (PLAYER / "player.js").read_bytes(),
            "player.css": (PLAYER / "player.css").read_bytes()}


def _element(parent: ElementTree.Element | None, tag: str, text: str | None = None,
             **attributes: str) -> ElementTree.Element:
    node = (ElementTree.Element(tag, attributes) if parent is None
            else ElementTree.SubElement(parent, tag, attributes))
    if text is not None:
        node.text = text
    return node


def scorm_manifest(kind: str, script_id: str, title: str, files: list[str],
                   options: PackageOptions, quiz: dict[str, Any] | None) -> bytes:
    """imsmanifest.xml: one organisation, one item, one SCO resource listing every file."""
    version_12 = kind == "scorm12"
    spaces = NS_12 if version_12 else NS_2004
    for prefix, uri in spaces.items():
        ElementTree.register_namespace(prefix, uri)
    ElementTree.register_namespace("xsi", XSI)

    def tag(name: str, prefix: str = "") -> str:
        return f"{{{spaces[prefix]}}}{name}"

    root = _element(None, tag("manifest"), identifier=f"sopreel-{script_id}", version="1")
    root.set(f"{{{XSI}}}schemaLocation", SCHEMAS_12 if version_12 else SCHEMAS_2004)
    metadata = _element(root, tag("metadata"))
    _element(metadata, tag("schema"), "ADL SCORM")
    _element(metadata, tag("schemaversion"), "1.2" if version_12 else "2004 4th Edition")
    organizations = _element(root, tag("organizations"), default="org")
    organization = _element(organizations, tag("organization"), identifier="org")
    _element(organization, tag("title"), title)
    item = _element(organization, tag("item"), identifier="item", identifierref="sco",
                    isvisible="true")
    _element(item, tag("title"), title)
    if version_12:
        if quiz:
            _element(item, tag("masteryscore", "adlcp"), str(quiz["passMark"]))
    else:
        _element(item, tag("completionThreshold", "adlcp"), completedByMeasure="true",
                 minProgressMeasure=f"{options.complete_at:.2f}")
        if quiz:
            sequencing = _element(item, tag("sequencing", "imsss"))
            objectives = _element(sequencing, tag("objectives", "imsss"))
            primary = _element(objectives, tag("primaryObjective", "imsss"),
                               objectiveID="quiz", satisfiedByMeasure="true")
            _element(primary, tag("minNormalizedMeasure", "imsss"),
                     f"{quiz['passMark'] / 100:.2f}")
    resources = _element(root, tag("resources"))
    kind_attribute = tag("scormtype" if version_12 else "scormType", "adlcp")
    resource = _element(resources, tag("resource"), identifier="sco", type="webcontent",
                        href="index.html")
    resource.set(kind_attribute, "sco")
    for name in sorted(files):
        _element(resource, tag("file"), href=name)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)


def tincan_manifest(activity_id: str, title: str) -> bytes:
    """tincan.xml: what an LMS reads to launch an xAPI package (the launch page, its id)."""
    space = "http://projecttincan.com/tincan.xsd"
    ElementTree.register_namespace("", space)
    root = _element(None, f"{{{space}}}tincan")
    activities = _element(root, f"{{{space}}}activities")
    activity = _element(activities, f"{{{space}}}activity", id=activity_id,
                        type="http://adlnet.gov/expapi/activities/lesson")
    _element(activity, f"{{{space}}}name", title)
    _element(activity, f"{{{space}}}launch", "index.html", lang="und")
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)


def verify_package(path: Path) -> list[str]:
    """What an LMS would trip over: a file the manifest lists, or the player loads, that is not
    in the zip."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "index.html" not in names:
            return ["index.html (the launch page) is not in the zip"]
        page = archive.read("index.html").decode("utf-8")
        needed = {"player.js": "index.html", "player.css": "index.html"}
        found = re.search(r'<script type="application/json" id="sopreel-config">(.*?)</script>',
                          page, re.S)
        config = json.loads(found.group(1)) if found else {}   # "<\\/" is JSON for "</"
        for entry in config.get("languages", []):
            needed |= {entry["video"]: "the player", entry["vtt"]: "the player"}
        if "imsmanifest.xml" in names:
            manifest = ElementTree.fromstring(archive.read("imsmanifest.xml"))
            needed |= {node.get("href", ""): "imsmanifest.xml" for node in manifest.iter()
                       if node.tag.endswith("}file")}
    return [f"{name} (named in {where}) is not in the zip"
            for name, where in sorted(needed.items()) if name not in names]
