// The words and phrases the prompt classifier looks for, by family, and how they are looked
// up without building a string per word: English words are hashed as they are read (FNV-1a
// over the lower-cased characters, a space between the words of a phrase), Chinese text by its
// windows of one to four characters.

/** Cue families: each word or phrase in LEXICON belongs to one. */
export const Cue = {
  /** hi, thanks, ok, 你好, 谢谢 */
  Greeting: 0,
  /** what is, who, how many, define, 是什么, 多少 */
  Lookup: 1,
  /** convert, translate, 换算, 翻译 */
  Convert: 2,
  /** summarize, rewrite, extract, draft an email, 总结, 提取, 润色 */
  Edit: 3,
  /** explain, difference, compare, 解释, 区别 */
  Explain: 4,
  /** function, query, regex, script, 函数, 脚本 */
  Snippet: 5,
  /** design, implement, refactor, migrate, debug, 设计, 实现, 重构 */
  Build: 6,
  /** distributed, concurrency, throughput, tenant, 分布式, 高可用 */
  Systems: 7,
  /** prove, derive, induction, 证明, 推导 */
  Proof: 8,
  /** probability, integral, eigenvalue, prime, 概率, 方程 */
  Math: 9,
  /** algorithm, complexity, dynamic programming, subarray, 算法, 复杂度 */
  Algorithm: 10,
  /** show your reasoning, optimal strategy, how many ways, 推理过程 */
  Deliberate: 11,
  /** must, without, at most, guarantee, 必须, 不超过 */
  Constraint: 12,
  /** first, then, finally, step, phase, 首先, 然后 */
  Steps: 13,
} as const;
export const CUE_COUNT = 14;

// One line per family: words and phrases (up to three English words, up to four Chinese
// characters) separated by ' | '. Inflections are listed, not stemmed: a stemmer per word
// would cost more than the whole lookup.
const LEXICON: Record<keyof typeof Cue, string> = {
  Greeting: `hi | hello | hey | hiya | thanks | thank | thx | ty | cheers | bye | goodbye | ok | okay | cool | great | awesome | good morning | good night | good afternoon | have a great | 你好 | 您好 | 谢谢 | 多谢 | 感谢 | 早上好 | 晚安 | 收到 | 好的 | 再见 | 哈喽`,
  Lookup: `what is | what's | what are | who | who's | when | where | which | how many | how much | how long | how far | how old | define | definition | meaning | mean | means | stand for | stands for | capital | synonym | antonym | opposite | plural | spell | roughly | approximately | default | version | is it | do you | can i | how do i | what time | what year | name three | refund | invoice | password | account | shipping | ship | order | 什么 | 是什么 | 什么是 | 哪里 | 哪个 | 哪些 | 多少 | 几号 | 几点 | 是谁 | 意思 | 多远 | 多长 | 多久 | 吗 | 怎么 | 如何 | 发货 | 退款 | 发票 | 密码 | 订单 | 客服`,
  Convert: `convert | conversion | translate | translation | you say | format this | format as | capitalize | uppercase | lowercase | celsius | fahrenheit | kilometers | kilometres | miles | ounces | teaspoons | centimeters | 换算 | 等于 | 翻译 | 怎么说 | 英文 | 英语 | 转成`,
  Edit: `summarize | summarise | summary | summarizing | tl;dr | tldr | one line | one sentence | one paragraph | rewrite | rephrase | paraphrase | proofread | grammar | typo | typos | extract | pull | classify | sentiment | email | reply | draft | post | tweet | caption | cover letter | story | poem | haiku | ideas | slogan | bullet | bullets | bullet points | markdown | table | csv | tone | professional | polite | friendly | shorten | docstrings | comments | commit message | readme | description | 总结 | 概括 | 摘要 | 提取 | 改写 | 润色 | 口语 | 邮件 | 周报 | 文案 | 起名 | 名字 | 要点 | 一句话 | 介绍 | 推荐`,
  Explain: `explain | explanation | difference | differences | compare | comparison | versus | vs | why | how does | how do | what does | pros and cons | in simple terms | plain words | example | 解释 | 区别 | 原理 | 为什么 | 优缺点 | 通俗 | 例子 | 做什么`,
  Snippet: `function | query | regex | regular expression | script | snippet | one-liner | command | sql | dockerfile | unit test | unit tests | cron | bash | css | component | 函数 | 正则 | 脚本 | 查询 | 命令 | 组件 | 单元测试`,
  Build: `design | designing | architect | architecture | implement | implementing | implementation | build | building | refactor | refactoring | restructure | migrate | migrating | migration | optimize | optimise | optimizing | debug | debugging | diagnose | investigate | redesign | rewrite it | scale | scaling | deploy | deployment | pipeline | spec | specification | roadmap | runbook | postmortem | operator | framework | backend | full-stack | end-to-end | infrastructure | terraform | set up | integrate | trade-offs | tradeoffs | trade-off | 设计 | 实现 | 重构 | 迁移 | 优化 | 架构 | 排查 | 部署 | 方案 | 搭建 | 改造 | 技术方案 | 系统 | 框架`,
  Systems: `distributed | concurrency | concurrent | concurrently | thread-safe | parallel | scalable | scalability | throughput | latency | consistency | consistent | replication | replicas | sharding | shard | shards | partitions | failover | idempotent | idempotency | idempotently | race | deadlock | deadlocks | high availability | multi-tenant | tenant | tenants | microservices | kubernetes | kafka | raft | consensus | leader election | region | regions | qps | retries | backoff | rollback | observability | vulnerabilities | security | oauth | authentication | auth | tls | websocket | websockets | webhook | crdt | crdts | compiler | interpreter | parser | emulator | operating system | cache | caching | queue | database schema | schema | load | downtime | reconciliation | ledger | real-time | 分布式 | 并发 | 高可用 | 一致性 | 吞吐 | 延迟 | 分片 | 分库 | 分表 | 限流 | 熔断 | 降级 | 灰度 | 回滚 | 容灾 | 幂等 | 集群 | 多租户 | 秒杀 | 缓存 | 队列 | 重试 | 监控 | 故障 | 权限 | 实时 | 同步 | 高峰 | 百万 | 千万 | 数据库`,
  Proof: `prove | proves | proving | proof | show that | derive | derivation | deriving | induction | rigorous | rigorously | justify | contradiction | correctness | lower bound | upper bound | is correct | 证明 | 推导 | 归纳 | 定理 | 反证 | 正确性 | 通项`,
  Math: `theorem | lemma | probability | probabilities | expected | expectation | variance | integral | derivative | eigenvalue | eigenvalues | matrix | equation | equations | polynomial | prime | primes | divisible | divides | integer | integers | modulo | factorial | extrema | maximize | minimize | maximum | minimum | recurrence | irrational | rational | converge | vertices | inequality | bayes | binomial | distribution | dice | cards | coins | compounded | gradient | differentiate | differentiating | solve | solving | 概率 | 期望 | 方差 | 方程 | 极限 | 积分 | 导数 | 矩阵 | 素数 | 整除 | 数列 | 最大值 | 最小值 | 函数 f | 无理数 | 顶点 | 区间 | 公式 | 梯度`,
  Algorithm: `algorithm | algorithms | complexity | time complexity | linear time | constant time | in-place | in place | extra space | amortized | worst case | worst-case | data structure | dynamic programming | dp | greedy | subarray | substring | subsequence | sorted arrays | sorted | graph | directed | tree | nodes | edges | heap | comparisons | memory limit | 算法 | 复杂度 | 空间 | 贪心 | 动态规划 | 状态转移 | 数组 | 有向图 | 最长 | 最短 | 排序 | 矩阵中`,
  Deliberate: `puzzle | riddle | reasoning | walk through | step by step | show the steps | show your | explain carefully | optimal | optimally | strategy | how many ways | in how many | who wins | minimum number | at least one | counterexample | valid | argument | verify | knights | knaves | weighings | justify each | 推理 | 推理过程 | 过程 | 理由 | 最少 | 最多 | 至少 | 几只 | 真话 | 说谎 | 能否`,
  Constraint: `must | without | at most | at least | no more than | less than | under | within | only | exactly | ensure | guarantee | guarantees | never | limit | bounded | constraint | constraints | requirement | requirements | keep | preserve | identical | 要求 | 必须 | 不能 | 不超过 | 低于 | 保证 | 限制 | 以内 | 保持 | 不变 | 不丢 | 不重`,
  Steps: `first | then | finally | next | step | steps | phase | phases | afterwards | also | plus | and then | 首先 | 然后 | 最后 | 步骤 | 其次 | 分阶段 | 包括 | 以及 | 并且 | 并`,
};

// Words that are ordinary in code or in every sentence do not appear above on purpose
// ("list", "make", "write", "help"): they say nothing about how hard a request is.

export const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
// 30-bit FNV-1a: keys stay small integers (V8 Smis), so the lookups allocate nothing. Dropping
// the top bits at each step equals dropping them at the end: they never feed back into the
// lower bits (xor is bitwise, multiplication carries upwards only).
export const fnvStep = (h: number, code: number) => Math.imul(h ^ code, FNV_PRIME) & 0x3fffffff;
/** Two Chinese characters as one small integer (both are within 0x3400–0x9fff). */
const cjkPair = (a: number, b: number) => (a - 0x3400) * 32768 + (b - 0x3400);
const cjkHash = (codes: number[]) => codes.reduce(fnvStep, FNV_OFFSET);
export const SPACE = 32;

const CUE_MASK = 0x0f; // room for 15 families (CUE_COUNT is 14)
const STARTS_PAIR = 0x10;
const STARTS_LONG = 0x20;

interface Lexicon {
  /** hash of a lower-cased English word or phrase → Cue */
  words: Map<number, number>;
  /** hashes of words and two-word phrases that begin a longer entry: only then look further */
  phraseStarts: Set<number>;
  /**
   * Per Chinese character (by code): CUE_MASK holds its own entry's family + 1 (0: none), and
   * STARTS_PAIR / STARTS_LONG say whether it begins a two- or a longer entry. One array read
   * per character decides whether any table needs asking.
   */
  cjkChar: Uint8Array;
  /** Chinese entries of two characters (by cjkPair) and of three or four (by cjkHash) */
  cjk2: Map<number, number>;
  cjkLong: Map<number, number>;
  /** the first two characters of each three- or four-character entry: only then hash the window */
  cjkLongStarts: Set<number>;
}

function buildLexicon(): Lexicon {
  const lexicon: Lexicon = {
    words: new Map(),
    phraseStarts: new Set(),
    cjkChar: new Uint8Array(0xa000),
    cjk2: new Map(),
    cjkLong: new Map(),
    cjkLongStarts: new Set(),
  };
  for (const [family, list] of Object.entries(LEXICON)) {
    const cue = Cue[family as keyof typeof Cue];
    for (const entry of list
      .split('|')
      .map((e) => e.trim())
      .filter(Boolean)) {
      if (isCjk(entry.charCodeAt(0))) {
        const codes = [...entry].map((c) => c.charCodeAt(0));
        if (!codes.every(isCjk)) continue; // mixed entries ("函数 f") are English-side only
        if (codes.length > 4) throw new Error(`Chinese lexicon entries have at most four characters: ${entry}`);
        const repeated = () => new Error(`lexicon entry "${entry}" repeats another (or its hash does)`);
        if (codes.length === 1) {
          if (lexicon.cjkChar[codes[0]] & CUE_MASK) throw repeated();
          lexicon.cjkChar[codes[0]] |= cue + 1;
          continue;
        }
        const [table, key] = codes.length === 2 ? [lexicon.cjk2, cjkPair(codes[0], codes[1])] : [lexicon.cjkLong, cjkHash(codes)];
        if (table.has(key)) throw repeated();
        table.set(key, cue);
        lexicon.cjkChar[codes[0]] |= codes.length === 2 ? STARTS_PAIR : STARTS_LONG;
        if (codes.length > 2) lexicon.cjkLongStarts.add(cjkPair(codes[0], codes[1]));
        continue;
      }
      const words = entry.toLowerCase().split(' ');
      let h = FNV_OFFSET;
      words.forEach((word, i) => {
        if (i > 0) {
          lexicon.phraseStarts.add(h);
          h = fnvStep(h, SPACE);
        }
        for (let j = 0; j < word.length; j++) h = fnvStep(h, word.charCodeAt(j));
      });
      // A repeated entry, or two entries whose 30-bit hashes collide, would silently count as
      // the wrong family: refuse the table instead.
      if (lexicon.words.has(h)) throw new Error(`lexicon entry "${entry}" repeats another (or its hash does)`);
      lexicon.words.set(h, cue);
    }
  }
  return lexicon;
}

export function isCjk(code: number): boolean {
  return (code >= 0x4e00 && code <= 0x9fff) || (code >= 0x3400 && code <= 0x4dbf);
}

export const LEX = buildLexicon();

/** Chinese windows ending at c: "c", "p1 c", "p2 p1 c", "p3 p2 p1 c" (0: no such character). */
export function lookupCjk(cues: Float64Array, c: number, p1: number, p2: number, p3: number): void {
  const chars = LEX.cjkChar;
  const own = chars[c] & CUE_MASK;
  if (own !== 0) cues[own - 1]++;
  if (p1 !== 0 && chars[p1] & STARTS_PAIR) {
    const two = LEX.cjk2.get(cjkPair(p1, c));
    if (two !== undefined) cues[two]++;
  }
  if (p2 !== 0 && chars[p2] & STARTS_LONG && LEX.cjkLongStarts.has(cjkPair(p2, p1))) {
    const three = LEX.cjkLong.get(fnvStep(fnvStep(fnvStep(FNV_OFFSET, p2), p1), c));
    if (three !== undefined) cues[three]++;
  }
  if (p3 !== 0 && chars[p3] & STARTS_LONG && LEX.cjkLongStarts.has(cjkPair(p3, p2))) {
    const four = LEX.cjkLong.get(fnvStep(fnvStep(fnvStep(fnvStep(FNV_OFFSET, p3), p2), p1), c));
    if (four !== undefined) cues[four]++;
  }
}
