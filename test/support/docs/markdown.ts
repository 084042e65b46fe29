/**
 * Reading the documentation as the checks of test/unit/docs.test.ts need it: headings and their GitHub anchors,
 * tables, relative links, and the checks themselves, each returning the problems it finds as sentences that name
 * exactly what is missing or wrong (empty: the page holds). Fenced code blocks are never read as Markdown.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';

export interface Heading {
  level: number;
  text: string;
  line: number;
}

export interface Table {
  /** The header row's cells. */
  header: string[];
  /** The body rows' cells. */
  rows: { cells: string[]; line: number }[];
  /** The heading the table is under (undefined before the first heading). */
  under: Heading | undefined;
}

export interface Page {
  headings: Heading[];
  tables: Table[];
  /** Lines outside fenced code blocks, with their numbers (1-based). */
  prose: { text: string; line: number }[];
}

const cellsOf = (row: string): string[] =>
  row
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());

const isSeparator = (row: string) => /^\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*\|?$/.test(row.trim());

export const readPage = (markdown: string): Page => {
  const headings: Heading[] = [];
  const tables: Table[] = [];
  const prose: Page['prose'] = [];
  let fence: string | undefined;
  let table: Table | undefined;
  markdown.split('\n').forEach((text, i) => {
    const line = i + 1;
    const marker = /^\s*(```+|~~~+)/.exec(text)?.[1];
    if (marker && (fence === undefined || marker.startsWith(fence))) {
      fence = fence === undefined ? marker : undefined;
      table = undefined;
      return;
    }
    if (fence !== undefined) return;
    prose.push({ text, line });
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(text);
    if (heading) headings.push({ level: heading[1]!.length, text: heading[2]!, line });
    if (!text.trim().startsWith('|')) {
      table = undefined;
      return;
    }
    if (!table) {
      table = { header: cellsOf(text), rows: [], under: headings.at(-1) };
      tables.push(table);
    } else if (!(table.rows.length === 0 && isSeparator(text))) table.rows.push({ cells: cellsOf(text), line });
  });
  return { headings, tables, prose };
};

/** GitHub's anchor for a heading: lowercase, punctuation dropped (backticks, colons, dots...), spaces to hyphens. */
export const slugOf = (heading: string): string =>
  heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

/** Every anchor of a page, with GitHub's -1, -2... for repeated headings. */
export const anchorsOf = (page: Page): Set<string> => {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const { text } of page.headings) {
    const slug = slugOf(text);
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
};

/** The names written in backticks in a piece of Markdown (`a`, `b`): each code span's text. */
export const codeSpans = (text: string): string[] => [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

/** The lines of a page under the level-2 heading `title` (its subsections included), up to the next level-2 one. */
export const sectionOf = (page: Page, title: string): { headings: Heading[]; tables: Table[] } | undefined => {
  const start = page.headings.find((h) => h.level === 2 && h.text === title);
  if (!start) return undefined;
  const next = page.headings.find((h) => h.level <= 2 && h.line > start.line);
  const inside = (line: number) => line > start.line && (next === undefined || line < next.line);
  return {
    headings: page.headings.filter((h) => inside(h.line)),
    tables: page.tables.filter((t) => t.rows.length > 0 && inside(t.rows[0]!.line)),
  };
};

/** The names in backticks in the first cell of each body row of these tables, with the row's line. */
export const firstCellNames = (tables: readonly Table[], pattern: RegExp): { name: string; line: number }[] =>
  tables.flatMap((t) =>
    t.rows.flatMap(({ cells, line }) =>
      codeSpans(cells[0] ?? '')
        .filter((name) => pattern.test(name))
        .map((name) => ({ name, line })),
    ),
  );

/**
 * Problems of a page that must have an entry for each of `names`: a heading naming it in backticks, or a table row
 * whose first cell does. `where` says where each name comes from, for the message.
 */
export const missingEntries = (
  page: Page,
  pageName: string,
  names: readonly string[],
  where: (name: string) => string,
): string[] => {
  const entries = new Set([
    ...page.headings.flatMap((h) => codeSpans(h.text)),
    ...page.tables.flatMap((t) => t.rows.flatMap((r) => codeSpans(r.cells[0] ?? ''))),
  ]);
  return names
    .filter((name) => !entries.has(name))
    .map((name) => `${pageName} has no entry for \`${name}\` (${where(name)}): add a table row or heading naming it`);
};

/** A relative link of a page: its target path (resolved from the page's folder) and anchor. */
export interface Link {
  text: string;
  target: string;
  line: number;
}

export const linksOf = (page: Page): Link[] =>
  page.prose.flatMap(({ text, line }) =>
    [...text.replace(/`[^`]*`/g, '').matchAll(/\[([^\]]*)\]\(([^)\s]+)\)/g)]
      .map((m) => ({ text: m[1]!, target: m[2]!, line }))
      .filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l.target)),
  );

/**
 * Problems of a page's relative links: a file that does not exist, or an anchor no heading of the target page has.
 * `file` is the page's path; `root` the repository, for the messages.
 */
export const brokenLinks = (file: string, root: string): string[] => {
  const page = readPage(readFileSync(file, 'utf8'));
  const name = relative(root, file);
  return linksOf(page).flatMap(({ target, line }) => {
    const [path = '', anchor] = target.split('#') as [string, string | undefined];
    const targetFile = path === '' ? file : resolve(dirname(file), decodeURI(path));
    if (!existsSync(targetFile))
      return [`${name}:${line} links to ${target}, but ${relative(root, targetFile)} does not exist`];
    if (anchor === undefined || !targetFile.endsWith('.md') || statSync(targetFile).isDirectory()) return [];
    const anchors = anchorsOf(targetFile === file ? page : readPage(readFileSync(targetFile, 'utf8')));
    return anchors.has(anchor.toLowerCase())
      ? []
      : [
          `${name}:${line} links to ${target}, but ${relative(root, targetFile)} has no heading with the anchor #${anchor}`,
        ];
  });
};
