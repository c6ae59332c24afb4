// What a terminal shows after `bytes`: enough of a VT100 (carriage return, new line, cursor up/down/column, erase
// line) to see whether a progress bar overwrote a message. Other escape sequences are ignored.
export function screen(bytes: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  const at = (r: number) => (lines[r] ??= []);
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === '\x1b' && bytes[i + 1] === '[') {
      const m = /^\x1b\[([?\d;]*)([A-Za-z])/.exec(bytes.slice(i));
      if (!m) continue;
      i += m[0].length - 1;
      const n = Number(m[1]!.replace('?', '') || '0');
      if (m[2] === 'A') row = Math.max(0, row - (n || 1));
      else if (m[2] === 'B') row += n || 1;
      else if (m[2] === 'G') col = Math.max(0, (n || 1) - 1);
      else if (m[2] === 'K') {
        const line = at(row);
        if (n === 0) line.length = Math.min(line.length, col);
        else if (n === 2) line.length = 0;
        else for (let k = 0; k < col && k < line.length; k++) line[k] = ' ';
      }
    } else if (c === '\r') col = 0;
    else if (c === '\n') {
      row++;
      col = 0;
    } else if (c >= ' ') {
      const line = at(row);
      while (line.length < col) line.push(' ');
      line[col++] = c;
    }
    at(row);
  }
  return lines.map((l) => l.join('').trimEnd());
}
