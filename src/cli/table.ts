// A text table whose numeric columns mark their best (lowest) cell with `*`,
// for migrate's and compare's side-by-side views.

export interface Column<R> {
  label: string;
  show: (row: R) => string;
  /** the value compared (lowest is best); undefined (or absent) when the cell takes no part */
  value?: (row: R) => number | undefined;
  /** the highest value is the best instead */
  higherIsBetter?: boolean;
}

/** Rows under a header; first column left-aligned, the rest right; `*` on the best value of each column that has two or more. */
export function markedTable<R>(columns: Column<R>[], rows: R[]): string {
  const cells = rows.map((row) =>
    columns.map((c) => {
      const text = c.show(row);
      const mine = c.value?.(row);
      if (mine === undefined) return text;
      const rivals = rows.map((r) => c.value!(r)).filter((v): v is number => v !== undefined);
      const best = c.higherIsBetter ? Math.max(...rivals) : Math.min(...rivals);
      return rivals.length >= 2 && mine === best ? `${text} *` : text;
    }),
  );
  const widths = columns.map((c, i) => Math.max(c.label.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");
  return [line(columns.map((c) => c.label)), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}
