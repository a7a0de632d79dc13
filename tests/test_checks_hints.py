"""Which repository line causes a finding: bundler options, package.json, .npmignore, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.checks.hints import (
    CANDIDATE_PATHS,
    Effect,
    Hints,
    JsFile,
    RepoLocation,
    blank_comments,
    config_lines,
    esbuild_sourcemap_effects,
    files_entry_matches,
    iter_settings,
    line_of,
    locate,
    npm_member,
    read_jsonc,
    rollup_sourcemap_effects,
    tarball_matches,
    webpack_devtool_effects,
)
from bot.config import CONFIG_PATH, load_policy
from bot.engine.model import Finding, Rule, Severity
from bot.engine.policy import Policy
from bot.engine.scan import scan_path
from tests.archives import Member, tar_bytes, zip_bytes

REAL = Path(__file__).parent / "fixtures" / "real"

TGZ = "widget-1.2.0.tgz"
"""The tarball `npm pack` makes of the PACKAGE_JSON below."""
IN_ZIP = f"npm-package.zip!/{TGZ}!/package/"


def finding(rule: Rule, path: str, message: str = "m", line: int | None = None) -> Finding:
    return Finding(rule, Severity.ERROR, path, message, line)


def line_with(text: str, needle: str) -> int:
    """The 1-based line of the first occurrence of `needle` (test helper)."""
    index = text.index(needle)
    return text.count("\n", 0, index) + 1


# --- realistic repository files ------------------------------------------------------------

PACKAGE_JSON = """{
  "name": "widget",
  "version": "1.2.0",
  "description": "A widget; see \\"files\\" below",
  "main": "dist/index.js",
  "files": [
    "dist",
    "README.md"
  ],
  "scripts": {
    "dev": "esbuild src/index.ts --bundle --sourcemap=inline --watch",
    "build": "tsc -p tsconfig.build.json && esbuild src/index.ts --bundle --outdir=dist",
    "test": "vitest"
  }
}
"""

WEBPACK = """// @ts-check
const path = require('path');
const TerserPlugin = require('terser-webpack-plugin');

/** @type {import('webpack').Configuration} */
module.exports = {
  mode: 'production',
  entry: './src/index.ts',
  // devtool: 'eval-cheap-module-source-map',   (kept for local debugging)
  /* devtool: 'inline-source-map', */
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: '[name].[contenthash].js',
    publicPath: 'https://cdn.example.com/assets/', // not a comment: "//" inside a string
  },
  devtool: 'source-map',
  module: {
    rules: [{ test: /\\.tsx?$/, use: 'ts-loader', exclude: /node_modules/ }],
  },
};
"""

VITE = """import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// https://vitejs.dev/config/
export default defineConfig({
  plugins: [react()],
  css: { devSourcemap: true },
  build: {
    outDir: 'dist',
    sourcemap: true,
    rollupOptions: {
      output: { manualChunks: { vendor: ['react', 'react-dom'] } },
    },
  },
})
"""

ROLLUP = """import typescript from '@rollup/plugin-typescript';
import terser from '@rollup/plugin-terser';

export default {
  input: 'src/index.ts',
  output: [
    { file: 'dist/index.cjs', format: 'cjs', sourcemap: true },
    { file: 'dist/index.mjs', format: 'es', sourcemap: 'hidden' },
  ],
  plugins: [typescript(), terser()],
};
"""

ESBUILD = """import * as esbuild from 'esbuild'

await esbuild.build({
  entryPoints: ['src/index.ts'],
  bundle: true,
  minify: true,
  sourcemap: 'external',
  outdir: 'dist',
})
"""

TSUP = """import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['cjs', 'esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  outDir: 'lib',
})
"""

TSCONFIG = """{
  // Visit https://aka.ms/tsconfig to read more about this file
  "compilerOptions": {
    "target": "ES2020",
    "module": "commonjs",
    "outDir": "lib",
    /* "inlineSources": true, */
    "declaration": true,
    "declarationMap": true,
    "sourceMap": true,
    "inlineSources": true,
    "strict": true,
  },
  "include": ["src"],
}
"""

CONFIG = """# release-guard policy
artifacts:
  - name: "npm-*"
    allow:
      - "package/package.json"
      - "package/dist/**"
deny:
  - "*.sqlite"
  - 'internal/**'
rules:
  sourcemap/reference: off
"""


# --- the candidate list -------------------------------------------------------------------


def test_candidate_paths_cover_the_brief_and_stay_short() -> None:
    expected = {
        "package.json",
        "tsconfig.json",
        "tsconfig.build.json",
        "jsconfig.json",
        "webpack.config.js",
        "webpack.config.ts",
        "webpack.config.mjs",
        "webpack.config.cjs",
        "vite.config.ts",
        "vite.config.js",
        "vite.config.mjs",
        "rollup.config.js",
        "rollup.config.mjs",
        "rollup.config.ts",
        "esbuild.config.js",
        "esbuild.config.mjs",
        "tsup.config.ts",
        "tsup.config.js",
        ".npmignore",
        ".github/release-guard.yml",
    }
    assert set(CANDIDATE_PATHS) == expected
    assert len(CANDIDATE_PATHS) == len(set(CANDIDATE_PATHS))


def test_repo_location_validates() -> None:
    assert RepoLocation("a.json", 1, "x").certain is False
    with pytest.raises(ValueError):
        RepoLocation("a.json", 0, "x")
    with pytest.raises(ValueError):
        RepoLocation("/etc/passwd", 1, "x")
    with pytest.raises(ValueError):
        RepoLocation("", 1, "x")


# --- reading the files ----------------------------------------------------------------------


def test_blank_comments_keeps_strings_lines_and_lengths() -> None:
    text = WEBPACK
    blanked = blank_comments(text)
    assert len(blanked) == len(text)
    assert blanked.count("\n") == text.count("\n")
    assert "eval-cheap-module-source-map" not in blanked
    assert "inline-source-map" not in blanked
    assert "https://cdn.example.com/assets/" in blanked  # `//` inside a string stays
    assert "devtool: 'source-map'" in blanked


def test_blank_comments_survives_unterminated_strings_and_comments() -> None:
    assert blank_comments("a = 'oops\nb: 1 // c") == "a = 'oops\nb: 1     "
    assert blank_comments("x /* never closed\ny") == "x                \n "


def test_read_jsonc_reads_tsconfig_with_comments_and_trailing_commas() -> None:
    doc = read_jsonc(TSCONFIG)
    assert doc is not None
    assert doc.get("compilerOptions", "inlineSources") is True
    offset = doc.offsets[("compilerOptions", "inlineSources")]
    assert line_of(TSCONFIG, offset) == line_with(TSCONFIG, '    "inlineSources": true,')
    assert doc.get("include", 0) == "src"
    assert doc.get("nope", "x") is None


def test_read_jsonc_keeps_array_offsets_and_rejects_garbage() -> None:
    doc = read_jsonc(PACKAGE_JSON)
    assert doc is not None
    assert line_of(PACKAGE_JSON, doc.offsets[("files", 1)]) == line_with(PACKAGE_JSON, '"README')
    assert doc.get("description") == 'A widget; see "files" below'
    for bad in ("{", '{"a": }', "[1 2]", '{"a": 1} x', "nul", '{"a" 1}', '"\\x"'):
        assert read_jsonc(bad) is None
    assert read_jsonc("[" * 200 + "]" * 200) is None  # too deep: refused, not a RecursionError
    assert read_jsonc('\ufeff{"a": [1, 2.5e3, null, false]}') is not None


def test_js_properties_skip_comments_strings_and_ternaries() -> None:
    js = JsFile(
        "const note = 'devtool: source-map';\n"
        "// devtool: 'source-map'\n"
        "const d = isProd ? devtool : other;\n"
        "module.exports = {\n"
        "  'devtool': isProd ? 'source-map' : 'eval-cheap-module-source-map',\n"
        "  nested: { devtool: false },\n"
        "};\n"
    )
    found = js.properties("devtool")
    assert [p.line for p in found] == [5, 6]
    assert found[0].value.literal is False
    assert found[0].value.options == ("source-map", "eval-cheap-module-source-map")
    assert found[1].value.literal is True
    assert found[1].value.options == (False,)


def test_js_property_values_stop_at_the_end_of_the_expression() -> None:
    js = JsFile(
        "export default { sourcemap: process.env.NODE_ENV !== 'production', minify: true }\n"
    )
    (prop,) = js.properties("sourcemap")
    assert prop.value.raw == "process.env.NODE_ENV !== 'production'"
    assert prop.value.options == ("production",)
    (assigned,) = JsFile("config.devtool = `source-map`;\n").assignments("devtool")
    assert assigned.value.options == ("source-map",)
    assert JsFile("x = `${a}-source-map`").assignments("x")[0].value.literal is False


# --- what settings do -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("devtool", "effects"),
    [
        ("source-map", {Effect.FILE, Effect.REFERENCE, Effect.EMBEDS}),
        ("hidden-source-map", {Effect.FILE, Effect.EMBEDS}),
        ("nosources-source-map", {Effect.FILE, Effect.REFERENCE}),
        ("hidden-nosources-source-map", {Effect.FILE}),
        ("inline-source-map", {Effect.INLINE, Effect.EMBEDS}),
        ("eval-source-map", {Effect.INLINE, Effect.EMBEDS}),
        ("inline-nosources-cheap-module-source-map", {Effect.INLINE}),
        ("eval", set()),
        (False, set()),
    ],
)
def test_webpack_devtool_effects(devtool: str | bool, effects: set[Effect]) -> None:
    assert webpack_devtool_effects(devtool) == effects


def test_rollup_and_esbuild_effects() -> None:
    assert rollup_sourcemap_effects(True, excludes_sources=False) == {
        Effect.FILE,
        Effect.REFERENCE,
        Effect.EMBEDS,
    }
    assert rollup_sourcemap_effects("hidden", excludes_sources=True) == {Effect.FILE}
    assert rollup_sourcemap_effects(False, excludes_sources=False) == set()
    assert esbuild_sourcemap_effects("external", sources_content=True) == {
        Effect.FILE,
        Effect.EMBEDS,
    }
    assert esbuild_sourcemap_effects("both", sources_content=False) == {
        Effect.INLINE,
        Effect.FILE,
    }
    assert esbuild_sourcemap_effects("linked", sources_content=False) == {
        Effect.FILE,
        Effect.REFERENCE,
    }


# --- embedded sources, per bundler ------------------------------------------------------------


def test_webpack_devtool_embeds_sources() -> None:
    where = locate(
        finding(Rule.EMBEDDED_SOURCES, "web.zip!/dist/main.3f9a.js.map"),
        {"webpack.config.js": WEBPACK},
    )
    assert where is not None
    assert (where.path, where.line) == ("webpack.config.js", line_with(WEBPACK, "  devtool:"))
    assert where.certain
    assert "nosources-source-map" in where.why
    assert "hidden-source-map" in where.why
    assert not where.why.startswith("Likely")


def test_webpack_devtool_variants() -> None:
    nosources = WEBPACK.replace("devtool: 'source-map'", "devtool: 'nosources-source-map'")
    files = {"webpack.config.js": nosources}
    assert locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/m.js.map"), files) is None
    map_file = locate(finding(Rule.MAP_FILE, "a.zip!/dist/m.js.map"), files)
    assert map_file is not None
    assert map_file.line == line_with(nosources, "  devtool:")
    hidden = WEBPACK.replace("devtool: 'source-map'", "devtool: 'hidden-source-map'")
    assert (
        locate(finding(Rule.REFERENCE, "a.zip!/dist/m.js"), {"webpack.config.ts": hidden}) is None
    )
    inline = WEBPACK.replace("devtool: 'source-map'", "devtool: 'inline-source-map'")
    where = locate(finding(Rule.INLINE_MAP, "a.zip!/dist/m.js"), {"webpack.config.mjs": inline})
    assert where is not None
    assert where.path == "webpack.config.mjs"
    assert "inline" in where.why


def test_commented_out_webpack_devtool_is_never_the_answer() -> None:
    commented = WEBPACK.replace("  devtool: 'source-map',", "  // devtool: 'source-map',")
    files = {"webpack.config.js": commented}
    for rule in (Rule.EMBEDDED_SOURCES, Rule.MAP_FILE, Rule.INLINE_MAP, Rule.REFERENCE):
        assert locate(finding(rule, "a.zip!/dist/m.js.map"), files) is None


def test_webpack_computed_devtool_is_a_likely_cause() -> None:
    config = """module.exports = (env, argv) => {
  const isProd = argv.mode === 'production';
  return {
    entry: './src/index.js',
    devtool: isProd ? 'source-map' : 'eval-cheap-module-source-map',
  };
};
"""
    where = locate(
        finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/m.js.map"), {"webpack.config.cjs": config}
    )
    assert where is not None
    assert where.line == 5
    assert not where.certain
    assert where.why.startswith("Likely cause")


def test_webpack_devtool_from_the_environment_is_a_weak_guess() -> None:
    config = "module.exports = {\n  devtool: process.env.DEVTOOL,\n};\n"
    where = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/m.js.map"), {"webpack.config.js": config})
    assert where is not None
    assert where.line == 2
    assert where.why.startswith("Likely cause")
    off = "module.exports = {\n  devtool: isCI ? false : false,\n};\n"
    assert (
        locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/m.js.map"), {"webpack.config.js": off})
        is None
    )


def test_webpack_devtool_assigned_in_a_function() -> None:
    config = """module.exports = (env) => {
  const config = { entry: './src/index.js' };
  if (env.production) {
    config.devtool = 'source-map';
  }
  return config;
};
"""
    where = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/m.js.map"), {"webpack.config.js": config})
    assert where is not None
    assert where.line == 4


def test_vite_build_sourcemap() -> None:
    where = locate(
        finding(Rule.EMBEDDED_SOURCES, "site.zip!/assets/index-4f2a.js.map"),
        {"vite.config.ts": VITE},
    )
    assert where is not None
    assert (where.path, where.line) == ("vite.config.ts", line_with(VITE, "    sourcemap: true"))
    assert where.certain
    assert "sourcemapExcludeSources" in where.why
    excluded = VITE.replace(
        "output: { manualChunks",
        "output: { sourcemapExcludeSources: true, manualChunks",
    )
    files = {"vite.config.ts": excluded}
    assert locate(finding(Rule.EMBEDDED_SOURCES, "site.zip!/assets/i.js.map"), files) is None
    assert locate(finding(Rule.MAP_FILE, "site.zip!/assets/i.js.map"), files) is not None


def test_vite_css_dev_sourcemap_is_not_build_sourcemap() -> None:
    only_css = VITE.replace("    sourcemap: true,\n", "")
    assert (
        locate(finding(Rule.MAP_FILE, "site.zip!/assets/i.css.map"), {"vite.config.js": only_css})
        is None
    )


def test_rollup_output_sourcemaps() -> None:
    files = {"rollup.config.mjs": ROLLUP}
    embedded = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/index.cjs.map"), files)
    assert embedded is not None
    assert embedded.path == "rollup.config.mjs"
    # Both outputs embed sources: two settings, so a guess that names the other one.
    assert not embedded.certain
    assert "Also possible" in embedded.why
    reference = locate(finding(Rule.REFERENCE, "a.zip!/dist/index.cjs"), files)
    assert reference is not None
    assert reference.line == line_with(ROLLUP, "sourcemap: true")
    assert reference.certain  # only `sourcemap: true` adds the comment; 'hidden' does not


def test_esbuild_config() -> None:
    files = {"esbuild.config.mjs": ESBUILD}
    embedded = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/index.js.map"), files)
    assert embedded is not None
    assert embedded.line == line_with(ESBUILD, "sourcemap:")
    assert "sourcesContent: false" in embedded.why
    assert locate(finding(Rule.REFERENCE, "a.zip!/dist/index.js"), files) is None  # external
    without = ESBUILD.replace("  outdir: 'dist',", "  sourcesContent: false,\n  outdir: 'dist',")
    files = {"esbuild.config.js": without}
    assert locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/index.js.map"), files) is None
    assert locate(finding(Rule.MAP_FILE, "a.zip!/dist/index.js.map"), files) is not None
    explicit = ESBUILD.replace("  outdir: 'dist',", "  sourcesContent: true,\n  outdir: 'dist',")
    where = locate(
        finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/i.js.map"), {"esbuild.config.js": explicit}
    )
    assert where is not None
    assert where.line == line_with(explicit, "sourcesContent: true")


def test_tsup_config() -> None:
    where = locate(
        finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/index.js.map"), {"tsup.config.ts": TSUP}
    )
    assert where is not None
    assert (where.path, where.line) == ("tsup.config.ts", line_with(TSUP, "sourcemap"))
    assert "esbuildOptions" in where.why
    esbuild_off = TSUP.replace(
        "  clean: true,",
        "  clean: true,\n  esbuildOptions(options) {\n    options.sourcesContent = false\n  },",
    )
    assert (
        locate(
            finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/i.js.map"), {"tsup.config.js": esbuild_off}
        )
        is None
    )


def test_tsconfig_inline_sources() -> None:
    files = {"tsconfig.json": TSCONFIG}
    where = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/index.js.map"), files)
    assert where is not None
    assert (where.path, where.line) == ("tsconfig.json", line_with(TSCONFIG, '    "inlineSources"'))
    assert where.certain
    assert 'remove "inlineSources"' in where.why
    reference = locate(finding(Rule.REFERENCE, "a.zip!/lib/index.js"), files)
    assert reference is not None
    assert reference.line == line_with(TSCONFIG, '"sourceMap"')
    declaration = locate(finding(Rule.MAP_FILE, "a.zip!/lib/index.d.ts.map"), files)
    assert declaration is not None
    assert declaration.line == line_with(TSCONFIG, '"declarationMap"')


def test_tsconfig_source_map_alone_does_not_embed_sources() -> None:
    plain = TSCONFIG.replace('    "inlineSources": true,\n', "")
    assert (
        locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/x.js.map"), {"tsconfig.json": plain})
        is None
    )
    extended = plain.replace("{\n", '{\n  "extends": "@acme/tsconfig/base.json",\n', 1)
    where = locate(
        finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/x.js.map"), {"tsconfig.json": extended}
    )
    assert where is not None
    assert where.line == line_with(extended, '"sourceMap"')
    assert where.why.startswith("Likely cause")
    assert "extends" in where.why


def test_tsconfig_build_is_preferred_and_tsc_makes_no_css_maps() -> None:
    build = (
        '{\n  "extends": "./tsconfig.json",\n  "compilerOptions": { "inlineSources": true }\n}\n'
    )
    files = {"tsconfig.json": TSCONFIG, "tsconfig.build.json": build}
    where = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/x.js.map"), files)
    assert where is not None
    assert where.path == "tsconfig.build.json"
    assert "Also possible: tsconfig.json" in where.why
    assert locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/styles.css.map"), files) is None


def test_package_json_build_scripts() -> None:
    pkg = PACKAGE_JSON.replace("--bundle --outdir=dist", "--bundle --sourcemap --outdir=dist")
    where = locate(
        finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/index.js.map"), {"package.json": pkg}
    )
    assert where is not None
    assert (where.path, where.line) == ("package.json", line_with(pkg, '"build"'))
    assert "--sources-content=false" in where.why
    assert where.certain
    # The dev script's inline map is not a release build.
    assert locate(finding(Rule.INLINE_MAP, "a.zip!/dist/index.js"), {"package.json": pkg}) is None
    fixed = pkg.replace("--sourcemap --outdir", "--sourcemap --sources-content=false --outdir")
    assert (
        locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/i.js.map"), {"package.json": fixed})
        is None
    )


@pytest.mark.parametrize(
    ("command", "rule", "needle"),
    [
        (
            'terser src/a.js -c -m --source-map \\"includeSources,url=inline\\" -o dist/a.min.js',
            Rule.EMBEDDED_SOURCES,
            "includeSources",
        ),
        (
            'terser src/a.js --source-map \\"includeSources,url=inline\\" -o dist/a.min.js',
            Rule.INLINE_MAP,
            "terser",
        ),
        ("tsc --sourceMap --inlineSources", Rule.EMBEDDED_SOURCES, "--inlineSources"),
        ("webpack --mode production --devtool source-map", Rule.EMBEDDED_SOURCES, "nosources"),
        ("rollup -c -m", Rule.EMBEDDED_SOURCES, "sourcemapExcludeSources"),
        ("vite build --sourcemap", Rule.MAP_FILE, "build.sourcemap"),
        ("tsup src/index.ts --sourcemap", Rule.REFERENCE, "sourcemap: false"),
        ("npx esbuild src/x.ts --sourcemap=inline", Rule.INLINE_MAP, "--sourcemap=inline"),
    ],
)
def test_cli_flags_in_build_scripts(command: str, rule: Rule, needle: str) -> None:
    pkg = f'{{\n  "name": "x",\n  "scripts": {{\n    "build:lib": "{command}"\n  }}\n}}\n'
    assert json.loads(pkg)
    where = locate(finding(rule, "a.zip!/dist/a.min.js"), {"package.json": pkg})
    assert where is not None, command
    assert where.line == 4
    assert needle in where.why


def test_scripts_that_are_not_builds_count_less() -> None:
    pkg = (
        '{\n  "scripts": {\n    "bundle-all": "esbuild a.ts --sourcemap",\n'
        '    "build": "esbuild b.ts --sourcemap"\n  }\n}\n'
    )
    where = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/a.js.map"), {"package.json": pkg})
    assert where is not None
    assert where.line == 4  # "build" is a build script; "bundle-all" only might be
    assert not where.certain
    assert 'Also possible: package.json:3 (the "bundle-all" script' in where.why


def test_output_folder_breaks_a_tie_between_bundlers() -> None:
    files = {"webpack.config.js": WEBPACK, "tsup.config.ts": TSUP}
    in_lib = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/index.js.map"), files)
    in_dist = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/main.js.map"), files)
    assert in_lib is not None and in_dist is not None
    assert in_lib.path == "tsup.config.ts"
    assert in_dist.path == "webpack.config.js"
    assert in_lib.why.startswith("Likely cause")  # the other still could be the cause


def test_no_settings_no_pointer() -> None:
    clean = {"webpack.config.js": "module.exports = { mode: 'production', devtool: false };\n"}
    for rule in (Rule.EMBEDDED_SOURCES, Rule.MAP_FILE, Rule.INLINE_MAP, Rule.REFERENCE):
        assert locate(finding(rule, "a.zip!/dist/m.js.map"), clean) is None
    assert locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/m.js.map"), {}) is None


@pytest.mark.parametrize("rule", [Rule.INVALID_MAP, Rule.ARCHIVE_LIMIT, Rule.UNSAFE_PATH])
def test_rules_without_a_repository_cause(rule: Rule) -> None:
    files = {"webpack.config.js": WEBPACK, "package.json": PACKAGE_JSON, CONFIG_PATH: CONFIG}
    assert locate(finding(rule, IN_ZIP + "dist/x.js.map"), files) is None


# --- npm packages ------------------------------------------------------------------------------


def test_npm_member_and_tarball_names() -> None:
    member = npm_member(IN_ZIP + "dist/x.js.map")
    assert member is not None
    assert (member.tarball, member.path, member.folder) == (TGZ, "dist/x.js.map", False)
    folder = npm_member("w-1.0.0.tgz!/package/.git/")
    assert folder is not None and folder.folder and folder.path == ".git"
    assert npm_member("a.zip!/dist/x.js") is None
    assert npm_member("w.tgz!/lib/x.js") is None
    assert npm_member("w.tgz!/package/") is None
    assert tarball_matches("widget-1.2.0.tgz", "widget") is True
    assert tarball_matches("acme-widget-1.2.0-beta.1.tgz", "@acme/widget") is True
    assert tarball_matches("other-1.2.0.tgz", "widget") is False
    assert tarball_matches("package.tgz", "widget") is None
    assert tarball_matches("widget-1.2.0.tgz", None) is None


@pytest.mark.parametrize(
    ("entry", "path", "expected"),
    [
        ("dist", "dist/a/b.js.map", True),
        ("dist/", "dist/x.js", True),
        ("./dist", "dist/x.js", True),
        ("/dist", "dist/x.js", True),
        ("dist", "src/dist/x.js", False),
        ("*.js", "index.js", True),
        ("*.js", "lib/index.js", False),
        ("lib/**/*.map", "lib/a/b/c.js.map", True),
        ("lib/**/*.map", "lib/a/b/c.js", False),
        ("dist/*.js", "dist/index.js.map", False),
        ("!dist/*.map", "dist/index.js.map", False),
        ("", "x", False),
        ("README.md", "README.md", True),
    ],
)
def test_files_entries_match_roughly_as_npm_does(entry: str, path: str, expected: bool) -> None:
    assert files_entry_matches(entry, path) is expected


def test_files_entry_matches_a_denied_folder() -> None:
    assert files_entry_matches("dist", "dist/.git", folder=True)
    assert files_entry_matches("dist/.git/", "dist/.git", folder=True)


def test_map_file_in_npm_package_points_at_the_files_entry() -> None:
    files = {"package.json": PACKAGE_JSON, "webpack.config.js": WEBPACK}
    where = locate(finding(Rule.MAP_FILE, IN_ZIP + "dist/main.js.map"), files)
    assert where is not None
    assert (where.path, where.line) == ("package.json", line_with(PACKAGE_JSON, '"dist"'))
    assert where.certain
    assert '"!**/*.map"' in where.why
    assert "webpack.config.js:" in where.why  # and what writes the maps


def test_embedded_sources_in_npm_package_prefer_the_bundler() -> None:
    files = {"package.json": PACKAGE_JSON, "webpack.config.js": WEBPACK}
    where = locate(finding(Rule.EMBEDDED_SOURCES, IN_ZIP + "dist/main.js.map"), files)
    assert where is not None
    assert where.path == "webpack.config.js"
    only_package = locate(
        finding(Rule.EMBEDDED_SOURCES, IN_ZIP + "dist/main.js.map"), {"package.json": PACKAGE_JSON}
    )
    assert only_package is not None
    assert only_package.line == line_with(PACKAGE_JSON, '"dist"')
    assert only_package.why.startswith("Likely cause")


def test_forbidden_file_in_npm_package() -> None:
    message = (
        "dist/.env must not ship: it matches the built-in deny pattern '.env' (environment file)"
    )
    files = {"package.json": PACKAGE_JSON, CONFIG_PATH: CONFIG}
    where = locate(finding(Rule.FORBIDDEN, IN_ZIP + "dist/.env", message), files)
    assert where is not None
    assert (where.path, where.line) == ("package.json", line_with(PACKAGE_JSON, '"dist"'))
    assert '"!dist/.env"' in where.why


def test_forbidden_folder_in_npm_package() -> None:
    files = {"package.json": PACKAGE_JSON}
    where = locate(finding(Rule.FORBIDDEN, IN_ZIP + "dist/.git/", "the folder .git/ …"), files)
    assert where is not None
    assert '"!dist/.git/"' in where.why


def test_a_files_list_that_matches_nothing_gives_no_pointer() -> None:
    files = {"package.json": PACKAGE_JSON}
    assert locate(finding(Rule.FORBIDDEN, IN_ZIP + "secrets/id_rsa"), files) is None


def test_no_files_list_and_no_npmignore_points_at_the_name() -> None:
    pkg = '{\n  "name": "widget",\n  "version": "1.2.0"\n}\n'
    where = locate(finding(Rule.FORBIDDEN, IN_ZIP + ".env"), {"package.json": pkg})
    assert where is not None
    assert (where.path, where.line) == ("package.json", 2)
    assert 'no "files" list' in where.why and "no .npmignore" in where.why
    assert where.certain


def test_npmignore_decides_without_a_files_list() -> None:
    pkg = '{\n  "name": "widget",\n  "version": "1.2.0"\n}\n'
    npmignore = "# keep the package small\nsrc/\ntest/\n*.log\n!fixtures/.env\n"
    files = {"package.json": pkg, ".npmignore": npmignore}
    reincluded = locate(finding(Rule.FORBIDDEN, IN_ZIP + "fixtures/.env"), files)
    assert reincluded is not None
    assert (reincluded.path, reincluded.line) == (".npmignore", 5)
    assert reincluded.certain
    other = locate(finding(Rule.FORBIDDEN, IN_ZIP + "config/.env"), files)
    assert other is not None
    assert (other.path, other.line) == (".npmignore", 1)
    assert other.why.startswith("Likely cause")
    assert '"/config/.env"' in other.why


def test_another_packages_tarball_gets_no_pointer() -> None:
    files = {"package.json": PACKAGE_JSON, "webpack.config.js": WEBPACK}
    path = "npm.zip!/some-dependency-3.0.0.tgz!/package/dist/index.js.map"
    for rule in (Rule.EMBEDDED_SOURCES, Rule.MAP_FILE, Rule.FORBIDDEN):
        assert locate(finding(rule, path), files) is None


def test_unrecognised_tarball_name_is_only_likely() -> None:
    where = locate(
        finding(Rule.MAP_FILE, "a.zip!/package.tgz!/package/dist/x.js.map"),
        {"package.json": PACKAGE_JSON},
    )
    assert where is not None
    assert where.why.startswith("Likely cause: the package.json")
    assert not where.certain


# --- the repository config ----------------------------------------------------------------------


def test_config_lines() -> None:
    lines = config_lines(CONFIG)
    assert lines.deny == (("*.sqlite", 8), ("internal/**", 9))
    assert lines.artifacts == (("npm-*", 4),)
    assert config_lines("- not a mapping").deny == ()
    assert config_lines("deny: [unclosed").deny == ()
    assert config_lines("artifacts:\n  - allow: []\n").artifacts == ()


def test_config_deny_pattern_outside_npm() -> None:
    message = "db/cache.sqlite must not ship: it matches the config's deny pattern '*.sqlite' (…)"
    where = locate(
        finding(Rule.FORBIDDEN, "site.zip!/db/cache.sqlite", message), {CONFIG_PATH: CONFIG}
    )
    assert where is not None
    assert (where.path, where.line) == (CONFIG_PATH, 8)
    assert where.certain
    built_in = message.replace(
        "the config's deny pattern '*.sqlite'", "the built-in deny pattern '*.pem'"
    )
    assert (
        locate(finding(Rule.FORBIDDEN, "site.zip!/db/x.pem", built_in), {CONFIG_PATH: CONFIG})
        is None
    )
    # A pattern from an organisation's defaults is not in this file.
    org = message.replace("'*.sqlite'", "'*.bak'")
    assert locate(finding(Rule.FORBIDDEN, "site.zip!/x.bak", org), {CONFIG_PATH: CONFIG}) is None


def test_not_allowed_points_at_the_artifact_rules_allowlist() -> None:
    message = (
        "notes.txt is outside the allowlist of the artifact rule 'npm-*' (2 patterns) that "
        "applies to 'npm-package'; add a pattern to its 'allow' list if it is meant to ship."
    )
    where = locate(
        finding(Rule.NOT_ALLOWED, "npm-package!/notes.txt", message), {CONFIG_PATH: CONFIG}
    )
    assert where is not None
    assert (where.path, where.line) == (CONFIG_PATH, 4)


# --- local paths ---------------------------------------------------------------------------------


def test_absolute_source_root_in_tsconfig() -> None:
    tsconfig = (
        '{\n  "compilerOptions": {\n    "sourceMap": true,\n'
        '    "sourceRoot": "/home/runner/work/lib/src/"\n  }\n}\n'
    )
    message = (
        "source map reveals 2 absolute local paths (sourceRoot '/home/runner/work/lib/src/'), "
        "e.g. …"
    )
    where = locate(
        finding(Rule.LOCAL_PATH, "a.zip!/lib/x.js.map", message), {"tsconfig.json": tsconfig}
    )
    assert where is not None
    assert (where.path, where.line, where.certain) == ("tsconfig.json", 4, True)
    relative = tsconfig.replace("/home/runner/work/lib/src/", "../src")
    assert (
        locate(
            finding(Rule.LOCAL_PATH, "a.zip!/lib/x.js.map", message), {"tsconfig.json": relative}
        )
        is None
    )


def test_absolute_resource_paths_in_webpack() -> None:
    config = (
        "module.exports = {\n  output: {\n"
        "    devtoolModuleFilenameTemplate: '[absolute-resource-path]',\n  },\n};\n"
    )
    where = locate(finding(Rule.LOCAL_PATH, "a.zip!/m.js.map"), {"webpack.config.js": config})
    assert where is not None
    assert where.line == 3
    esbuild = "await build({\n  sourcemap: true,\n  sourceRoot: 'C:\\\\work\\\\src',\n})\n"
    where = locate(finding(Rule.LOCAL_PATH, "a.zip!/m.js.map"), {"esbuild.config.js": esbuild})
    assert where is not None
    assert where.line == 3
    assert (
        locate(finding(Rule.LOCAL_PATH, "a.zip!/m.js.map"), {"webpack.config.js": WEBPACK}) is None
    )


# --- the real fixtures, end to end ---------------------------------------------------------------


def test_real_tsc_package_end_to_end() -> None:
    """Scan the real tsc-built tarball and point at the real tsconfig that built it."""
    report = scan_path(REAL / "localpath-tsc-1.0.0.tgz", policy=Policy())
    files = {
        "package.json": (REAL / "src/packages/localpath-tsc/package.json").read_text(),
        "tsconfig.json": (REAL / "src/tsc-lib/tsconfig.json").read_text(),
    }
    tsconfig = files["tsconfig.json"]
    hints = Hints(files)
    by_rule: dict[Rule, set[tuple[str, int]]] = {}
    for f in report.findings:
        where = hints(f)
        assert where is not None, f
        by_rule.setdefault(f.rule, set()).add((where.path, where.line))
    assert by_rule[Rule.EMBEDDED_SOURCES] == {
        ("tsconfig.json", line_with(tsconfig, '"inlineSources"'))
    }
    assert by_rule[Rule.LOCAL_PATH] == {("tsconfig.json", line_with(tsconfig, '"sourceRoot"'))}
    assert by_rule[Rule.REFERENCE] == {("tsconfig.json", line_with(tsconfig, '"sourceMap"'))}


def test_real_esbuild_artifact_end_to_end() -> None:
    """The Actions artifact zip of the esbuild fixture, with the command build.sh ran."""
    report = scan_path(REAL / "actions-artifact-leaky.zip", policy=Policy())
    package = json.loads((REAL / "src/packages/leaky-esbuild/package.json").read_text())
    package["scripts"] = {
        "build": "esbuild src/index.ts --bundle --sourcemap --outfile=dist/index.js"
    }
    text = json.dumps(package, indent=2)
    hints = Hints({"package.json": text})
    embedded = [f for f in report.findings if f.rule is Rule.EMBEDDED_SOURCES]
    assert embedded
    for f in embedded:
        where = hints(f)
        assert where is not None
        assert (where.path, where.line) == ("package.json", line_with(text, '"build"'))
        assert where.certain


def test_engine_messages_for_config_deny_patterns(tmp_path: Path) -> None:
    """The config pointer relies on the engine's wording; check it against the engine."""
    tarball = tar_bytes(
        [
            Member("package/package.json", b"{}"),
            Member("package/dist/cache.sqlite", b"x"),
            Member("package/dist/.env", b"X=1"),
            Member("package/notes.txt", b"x"),
        ],
        compression="gz",
    )
    artifact = tmp_path / "npm-package.zip"
    artifact.write_bytes(zip_bytes([Member(TGZ, tarball)]))
    policy = load_policy(CONFIG, path=CONFIG_PATH)
    report = scan_path(artifact, policy=policy, name="npm-package")
    assert any(f.path.startswith(f"npm-package!/{TGZ}!/package/") for f in report.findings)
    bare = '{\n  "name": "widget",\n  "version": "1.2.0"\n}\n'
    hints = Hints({CONFIG_PATH: CONFIG, "package.json": PACKAGE_JSON})
    no_files = Hints({CONFIG_PATH: CONFIG, "package.json": bare})
    checked = []
    for f in report.findings:
        where, fallback = hints(f), no_files(f)
        if f.rule is Rule.FORBIDDEN and f.path.endswith("cache.sqlite"):
            assert where is not None and where.path == "package.json"  # the "dist" entry
            assert fallback is not None and (fallback.path, fallback.line) == (CONFIG_PATH, 8)
            checked.append("deny")
        if f.rule is Rule.NOT_ALLOWED and f.path.endswith("notes.txt"):
            assert where is not None and (where.path, where.line) == (CONFIG_PATH, 4)
            checked.append("allow")
    assert sorted(checked) == ["allow", "deny"]


# --- robustness ---------------------------------------------------------------------------


def test_hints_cache_and_ignore_huge_files() -> None:
    hints = Hints({"webpack.config.js": WEBPACK, "vite.config.ts": "x" * 2_000_000})
    f = finding(Rule.EMBEDDED_SOURCES, "a.zip!/dist/m.js.map")
    assert hints(f) is hints(f)
    assert [s.path for s in iter_settings({"vite.config.ts": "x" * 2_000_000})] == []


_CONFIG_TEXT = st.lists(
    st.sampled_from(
        [
            *"{}[]()'\"`/*\\:,;=?!\n tsrue fal0123",
            *("devtool", "sourcemap", "//", "/*", "*/", '"inlineSources"', '"files"', "true"),
            *("dist", '"compilerOptions"', "--sourcemap"),
        ]
    ),
    max_size=120,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    text=_CONFIG_TEXT,
    path=st.sampled_from(CANDIDATE_PATHS),
    rule=st.sampled_from(list(Rule)),
    member=st.sampled_from(
        ["a.zip!/dist/x.js.map", IN_ZIP + "dist/x.js.map", IN_ZIP + ".env", "x"]
    ),
)
def test_garbage_files_never_crash_and_lines_exist(
    text: str, path: str, rule: Rule, member: str
) -> None:
    files = {path: text, "package.json": PACKAGE_JSON} if path != "package.json" else {path: text}
    where = Hints(files)(finding(rule, member, "the config's deny pattern 'x'"))
    if where is not None:
        assert where.path in files
        assert 1 <= where.line <= files[where.path].count("\n") + 1
        assert where.why


def test_tsconfig_that_extends_still_points_sourcemap_at_its_maps() -> None:
    tsconfig = (
        '{\n  "extends": "./base.json",\n  "compilerOptions": {\n    "sourceMap": true\n  }\n}\n'
    )
    files = {"tsconfig.json": tsconfig}
    reference = locate(finding(Rule.REFERENCE, "a.zip!/lib/x.js"), files)
    assert reference is not None
    assert (reference.line, reference.certain) == (4, True)
    embedded = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/x.js.map"), files)
    assert embedded is not None
    assert (embedded.line, embedded.certain) == (4, False)


def test_tsconfig_the_parser_cannot_read_is_searched_as_text() -> None:
    json5 = "{\n  compilerOptions: {\n    'inlineSources': true,\n    sourceMap: true,\n  }\n}\n"
    where = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/lib/x.js.map"), {"tsconfig.json": json5})
    assert where is not None
    assert where.line == 3
    assert where.why.startswith("Likely cause")  # found by searching, not by parsing
    rooted = '{\n  "compilerOptions": {\n    "sourceRoot": "/Users/me/src",\n  }\n  oops\n}\n'
    local = locate(
        finding(Rule.LOCAL_PATH, "a.zip!/x.js.map", "… '/Users/me/src' …"),
        {"tsconfig.json": rooted},
    )
    assert local is not None
    assert (local.line, local.certain) == (3, True)


def test_terser_plugin_options_in_a_webpack_config() -> None:
    config = """const TerserPlugin = require('terser-webpack-plugin');
module.exports = {
  devtool: 'nosources-source-map',
  optimization: {
    minimizer: [
      new TerserPlugin({
        terserOptions: { sourceMap: { includeSources: true } },
      }),
    ],
  },
};
"""
    where = locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/m.js.map"), {"webpack.config.js": config})
    assert where is not None
    assert (where.line, where.certain) == (7, True)
    assert "includeSources" in where.why


@pytest.mark.parametrize(
    ("path", "text", "needle"),
    [
        (
            "tsconfig.json",
            '{"compilerOptions": {\n  "inlineSourceMap": true\n}}',
            "inlineSourceMap",
        ),
        ("vite.config.ts", "export default {\n  build: { sourcemap: 'inline' },\n}", "'inline'"),
        ("rollup.config.js", "export default {\n  output: { sourcemap: 'inline' },\n}", "'inline'"),
        ("tsup.config.ts", "export default {\n  sourcemap: 'inline',\n}", "tsup"),
        ("esbuild.config.mjs", "build({\n  sourcemap: 'both',\n})", "'both'"),
    ],
)
def test_inline_maps_per_tool(path: str, text: str, needle: str) -> None:
    where = locate(finding(Rule.INLINE_MAP, "a.zip!/dist/x.js"), {path: text})
    assert where is not None
    assert (where.path, where.line) == (path, 2)
    assert needle in where.why
    assert where.certain


def test_terser_cli_with_a_map_url_adds_a_reference() -> None:
    pkg = (
        '{\n  "scripts": {\n'
        '    "build": "terser a.js --source-map \\"url=a.min.js.map\\" -o a.min.js"\n  }\n}\n'
    )
    where = locate(finding(Rule.REFERENCE, "a.zip!/a.min.js"), {"package.json": pkg})
    assert where is not None
    assert where.line == 3
    assert (
        locate(finding(Rule.EMBEDDED_SOURCES, "a.zip!/a.min.js.map"), {"package.json": pkg}) is None
    )


def test_package_without_a_name_gives_no_default_pointer() -> None:
    where = locate(finding(Rule.FORBIDDEN, "p.tgz!/package/.env"), {"package.json": "{}"})
    assert where is None


def test_config_with_odd_keys_is_read_safely() -> None:
    assert config_lines("? [a, b]\n: 1\ndeny: ['x']\n").deny == (("x", 3),)
    assert config_lines("").deny == ()


def test_webpack_absolute_resource_path_function() -> None:
    config = (
        "module.exports = {\n  output: {\n    devtoolModuleFilenameTemplate: (info) =>\n"
        "      info.absoluteResourcePath,\n  },\n};\n"
    )
    where = locate(finding(Rule.LOCAL_PATH, "a.zip!/m.js.map"), {"webpack.config.js": config})
    assert where is not None
    assert where.line == 3


def test_relative_source_root_that_the_message_does_not_name() -> None:
    tsconfig = '{"compilerOptions": {\n  "mapRoot": "/srv/maps"\n}}'
    where = locate(
        finding(Rule.LOCAL_PATH, "a.zip!/m.js.map", "… '/home/x' …"), {"tsconfig.json": tsconfig}
    )
    assert where is not None
    assert where.why.startswith("Likely cause")


def test_prettier_style_multiline_ternary() -> None:
    config = """export default defineConfig(({ mode }) => ({
  build: {
    sourcemap:
      mode === 'production'
        ? 'hidden'
        : true,
    minify: true,
  },
}))
"""
    js = JsFile(config)
    (prop,) = js.properties("sourcemap")
    assert prop.value.options == ("production", "hidden", True)
    where = locate(finding(Rule.REFERENCE, "a.zip!/x.js"), {"vite.config.ts": config})
    assert where is not None
    assert (where.line, where.certain) == (3, False)
