// Browser check: opens each notebook in a real JupyterLab in headless Chromium, started exactly as
// the learner's (scripts/jupyter-lab.sh, the repository as the served root), and checks:
//   - the learner's notebooks/NN.ipynb: every markdown image loads and every local markdown link
//     resolves (a wrong served root, or a link to a file that is not there, fails);
//   - the executed copy target/notebooks/NN.ipynb: HTML tables for DataFrames and SVG charts are
//     rendered, and its markdown loads the same way; then takes the README's screenshots.
// Run by scripts/browser-check.sh. Uses playwright-core (no bundled browser) driving the system's
// Chromium.
const path = require("path");
const fs = require("fs");

const modules = process.env.BROWSER_CHECK_MODULES;
const { chromium } = require(path.join(modules, "node_modules", "playwright-core"));

const [base, outDir] = process.argv.slice(2);

// What each notebook must show once rendered: at least this many tables and SVG charts.
// The screenshots: which rendered output to scroll to (the n-th table or chart) and its file name.
const EXPECT = {
  "01_setup.ipynb": { tables: 2, svgs: 0, shots: [["table", 0, "01-status.png"]] },
  "02_distribution.ipynb": { tables: 4, svgs: 1, shots: [["table", 2, "02-storage-trace.png"]] },
  "03_crud.ipynb": { tables: 6, svgs: 0, shots: [["table", 1, "03-crud-compare.png"]] },
  "04_load_test.ipynb": { tables: 3, svgs: 4, shots: [["svg", 0, "04-latency-histogram.png"], ["svg", 2, "04-percentiles.png"]] },
  "05_failure_modes.ipynb": { tables: 8, svgs: 1, shots: [["svg", 0, "05-bank-timeline.png"]] },
};

// Only the notebook on screen: JupyterLab keeps other documents' panels in the DOM, hidden.
const PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)";
const TABLES = `${PANEL} .jp-OutputArea-output table`;
// JupyterLab renders image/svg+xml outputs as <img> inside .jp-RenderedSVG, and markdown
// images (the architecture diagram) as <img> in a markdown cell.
const SVGS = [".jp-RenderedSVG img", ".jp-RenderedSVG svg", ".jp-RenderedMarkdown img"]
  .map((s) => `${PANEL} ${s}`)
  .join(", ");
const MD_IMAGES = `${PANEL} .jp-RenderedMarkdown img`;
const MD_LINKS = `${PANEL} .jp-RenderedMarkdown a[href]`;

// Opens `file` (a path under the served root) alone in a fresh workspace and waits for its cells.
async function open(page, base, file) {
  const ws = file.replace(/\W/g, "");
  await page.goto(`${base}/lab/workspaces/${ws}/tree/${file}?reset`);
  try {
    await page.waitForSelector(`${PANEL} .jp-Cell`, { timeout: 60000 });
  } catch (e) {
    throw new Error(`${file} did not open in JupyterLab: is the repository the served root (scripts/jupyter-lab.sh)? ${e.message.split("\n")[0]}`);
  }
}

// Markdown images and local links of the notebook on screen: how many were checked, and the broken
// ones as "what (why)" strings.
// JupyterLab resolves a markdown image or link against the notebook's folder and serves it under
// /files/; a path outside the served root, or a missing file, answers 404.
async function brokenMarkdown(page) {
  // Images load asynchronously: give them until they are complete (loaded or failed).
  await page
    .waitForFunction((sel) => [...document.querySelectorAll(sel)].every((i) => i.complete), MD_IMAGES, { timeout: 15000 })
    .catch(() => {});
  const bad = await page.$$eval(MD_IMAGES, (els) =>
    els.filter((i) => !(i.naturalWidth > 0)).map((i) => `image ${i.getAttribute("src")} (did not load)`),
  );
  const links = await page.$$eval(MD_LINKS, (els) =>
    els.map((a) => ({ raw: a.getAttribute("href"), url: a.href })),
  );
  const origin = new URL(page.url()).origin;
  for (const { raw, url } of links) {
    if (raw.startsWith("#") || new URL(url).origin !== origin) continue; // in-page or external
    const target = url.split("#")[0];
    const res = await page.request.get(target);
    if (res.status() !== 200) bad.push(`link ${raw} (${target} answered ${res.status()})`);
  }
  const images = await page.locator(MD_IMAGES).count();
  return { bad, checked: images + links.length };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  let failed = 0;
  for (const [nb, want] of Object.entries(EXPECT)) {
    const t0 = Date.now();
    // 1. The learner's own notebook, as they open it: its markdown must render whole.
    await open(page, base, `notebooks/${nb}`);
    const learnerBroken = await brokenMarkdown(page);
    // 2. The executed copy: the outputs a run produced must render as tables and charts.
    await open(page, base, `target/notebooks/${nb}`);
    // Outputs render asynchronously after the notebook model loads; wait for the last expected kind.
    try {
      await page.waitForFunction(
        ([t, s, nt, ns]) =>
          document.querySelectorAll(t).length >= nt && document.querySelectorAll(s).length >= ns,
        [TABLES, SVGS, want.tables, want.svgs],
        { timeout: 30000 },
      );
    } catch (_) {
      /* counted below */
    }
    const tables = await page.locator(TABLES).count();
    const svgs = await page.locator(SVGS).count();
    // A rendered <img> of an SVG must decode to a real size (not a broken image). Each is
    // scrolled into view and decoded first: JupyterLab loads images far down a long notebook
    // lazily, and an image not loaded yet also has naturalWidth 0. decode() rejects on a truly
    // broken image; 5 s without an answer counts by the size it has by then.
    const broken = await page.$$eval(SVGS, async (els) => {
      let bad = 0;
      for (const e of els) {
        if (e.tagName !== "IMG") continue;
        e.scrollIntoView();
        const ok = await Promise.race([
          e.decode().then(() => e.naturalWidth > 0, () => false),
          new Promise((r) => setTimeout(() => r(e.naturalWidth > 0), 5000)),
        ]);
        if (!ok) bad++;
      }
      return bad;
    });
    const executedBroken = await brokenMarkdown(page);
    const mdBroken = [
      ...learnerBroken.bad.map((b) => `notebooks/${nb}: broken ${b}`),
      ...executedBroken.bad.map((b) => `target/notebooks/${nb}: broken ${b}`),
    ];
    const ok = tables >= want.tables && svgs >= want.svgs && broken === 0 && mdBroken.length === 0;
    if (!ok) failed++;
    console.log(
      `${ok ? "ok  " : "FAIL"} ${nb}: ${tables} tables (want ≥ ${want.tables}), ${svgs} charts/images (want ≥ ${want.svgs}), ${broken} broken, markdown: ${mdBroken.length} of ${learnerBroken.checked + executedBroken.checked} images/links broken, ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    for (const b of mdBroken) console.log(`     ${b}`);
    for (const [kind, n, file] of want.shots) {
      const el = page.locator(kind === "table" ? TABLES : `${PANEL} .jp-RenderedSVG`).nth(n);
      if ((await el.count()) === 0) continue;
      // Put the output near the top of the view with the cell that produced it above it.
      await el.evaluate((e) => e.closest(".jp-Cell").scrollIntoView({ block: "start" }));
      await page.waitForTimeout(500);
      fs.mkdirSync(outDir, { recursive: true });
      await page.screenshot({ path: path.join(outDir, file) });
      console.log(`     screenshot ${path.join(outDir, file)}`);
    }
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
