// Fill and save the "Add Connection" form of a running Airflow UI in headless Debian chromium.
// Usage: node fill_form.js '<json spec>'  (written by tests/integration/test_ui_forms.py)
// spec: {base, token, type, conn_id, host, texts: {field: value}, choices: {field: option label}, screenshot}
const { chromium } = require('playwright-core');

(async () => {
  const spec = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
           '--disable-sync', '--no-first-run'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    await context.addCookies([{ name: '_token', value: spec.token, url: spec.base }]);
    const page = await context.newPage();
    page.setDefaultTimeout(30000);
    await page.goto(spec.base + '/connections');
    await page.getByRole('button', { name: 'Add Connection' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.locator('input[name="connection_id"]').fill(spec.conn_id);
    await dialog.getByRole('combobox').first().click();
    await page.keyboard.type(spec.type);
    await page.getByRole('option', { name: spec.type }).click();
    await dialog.locator('input[name="host"]').fill(spec.host);
    await dialog.getByRole('button', { name: 'Extra Fields', exact: true }).click();
    for (const [field, value] of Object.entries(spec.texts || {})) {
      await dialog.locator(`input[name="element_${field}"]`).fill(value);
    }
    for (const [field, label] of Object.entries(spec.choices || {})) {
      const select = dialog.locator(`input[name="element_${field}"]`).locator('..');
      await select.click();
      await page.getByRole('option', { name: label, exact: true }).click();
    }
    if (spec.screenshot) {
      // the first field set, with the ones around it
      const first = Object.keys({ ...spec.choices, ...spec.texts })[0];
      await dialog.locator(`input[name="element_${first}"]`).locator('..').scrollIntoViewIfNeeded();
      await page.mouse.move(0, 0);
      await page.screenshot({ path: spec.screenshot, animations: 'disabled' });
    }
    const saved = page.waitForResponse(r => r.url().endsWith('/api/v2/connections') && r.request().method() === 'POST');
    await dialog.getByRole('button', { name: 'Save' }).click();
    const response = await saved;
    console.log(JSON.stringify({ status: response.status(), body: await response.json() }));
  } finally {
    await browser.close();
  }
})().catch(err => { console.error(err.stack || String(err)); process.exit(1); });
