// Browser check: opens each executed notebook in a real JupyterLab in headless Chromium and
// checks that what the user should see is really rendered there — HTML tables for DataFrames,
// SVG images for charts — then takes the README's screenshots.
//
// Run by scripts/browser-check.sh (which starts JupyterLab on target/notebooks). Uses
// playwright-core (no bundled browser) driving the system's Chromium.
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

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  let failed = 0;
  for (const [nb, want] of Object.entries(EXPECT)) {
    const t0 = Date.now();
    // A workspace of its own per notebook (?reset): only this notebook open, nothing restored.
    const ws = nb.replace(/\W/g, "");
    await page.goto(`${base}/lab/workspaces/${ws}/tree/notebooks/${nb}?reset`);
    await page.waitForSelector(`${PANEL} .jp-Cell`, { timeout: 60000 });
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
    // A rendered <img> of an SVG must have decoded to a real size (not a broken image).
    const broken = await page.$$eval(SVGS, (els) =>
      els.filter((e) => e.tagName === "IMG" && !(e.naturalWidth > 0)).length,
    );
    const ok = tables >= want.tables && svgs >= want.svgs && broken === 0;
    if (!ok) failed++;
    console.log(
      `${ok ? "ok  " : "FAIL"} ${nb}: ${tables} tables (want ≥ ${want.tables}), ${svgs} charts/images (want ≥ ${want.svgs}), ${broken} broken, ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
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
