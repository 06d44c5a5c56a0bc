// Line charts with uPlot (small, fast, canvas): one per panel, sized to its container.
import uPlot from 'uplot';

export const PALETTE = ['#4cc9f0', '#f72585', '#ffb703', '#80ed99', '#b388ff', '#ff8c42', '#a0a0a0'];

export interface Chart {
  setData(data: uPlot.AlignedData): void;
  destroy(): void;
}

interface ChartOptions {
  series: Array<{ label: string; color?: string }>;
  /** How the y values read in the legend (e.g. "$0.0012", "3.2/s"). */
  value?: (v: number | null) => string;
  height?: number;
  /** Times read in UTC (buckets that start at UTC midnight: a local clock would put them on the day before, west of Greenwich). */
  utc?: boolean;
}

const AXIS = { stroke: '#9aa4b2', grid: { stroke: '#2a3140', width: 1 }, ticks: { stroke: '#2a3140', width: 1 } };

export function lineChart(container: HTMLElement, opts: ChartOptions): Chart {
  const value = opts.value ?? ((v: number | null) => (v === null ? '—' : String(v)));
  const width = () => Math.max(300, container.clientWidth);
  const plot = new uPlot(
    {
      width: width(),
      height: opts.height ?? 220,
      cursor: { drag: { x: false, y: false } },
      ...(opts.utc && { tzDate: (ts: number) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC') }),
      scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        AXIS,
        {
          ...AXIS,
          values: (_u, ticks) => ticks.map((t) => value(t)),
          // Wide enough for the longest label ("$0.000012" needs more room than "4").
          size: (_u, values) => 24 + 7 * Math.max(2, ...(values ?? []).map((v) => String(v).length)),
        },
      ],
      series: [
        {},
        ...opts.series.map((s, i) => ({
          label: s.label,
          stroke: s.color ?? PALETTE[i % PALETTE.length],
          width: 2,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => value(v),
        })),
      ],
    },
    [[], ...opts.series.map(() => [])],
    container,
  );
  const resize = new ResizeObserver(() => plot.setSize({ width: width(), height: opts.height ?? 220 }));
  resize.observe(container);
  return {
    setData: (data) => plot.setData(data),
    destroy: () => {
      resize.disconnect();
      plot.destroy();
    },
  };
}
