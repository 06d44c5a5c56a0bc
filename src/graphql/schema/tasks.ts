// recordTaskOutcome: marks a task succeeded or failed; costPerTask reads the latest verdict.
import { GraphQLError } from 'graphql';
import { recordTaskOutcome, type TaskOutcome, TaskOutcomeInput } from '../../analytics/outcomes.js';
import { type Builder, invalidInput } from '../builder.js';
import { store } from './errors.js';

export function registerTasks(builder: Builder) {
  const Outcome = builder.objectRef<TaskOutcome>('TaskOutcome').implement({
    fields: (t) => ({
      teamId: t.exposeID('teamId'),
      taskId: t.exposeString('taskId'),
      success: t.exposeBoolean('success'),
      score: t.exposeFloat('score', { nullable: true }),
      note: t.exposeString('note', { nullable: true }),
      recordedAt: t.field({ type: 'DateTime', resolve: (o) => o.recordedAt }),
    }),
  });
  const Input = builder.inputType('TaskOutcomeInput', {
    fields: (t) => ({
      taskId: t.string({ required: true }),
      success: t.boolean({ required: true }),
      score: t.float(),
      note: t.string(),
      teamId: t.id({ description: 'Required for a token not bound to a team; a team-bound token records for its own team.' }),
    }),
  });

  builder.mutationField('recordTaskOutcome', (t) =>
    t.field({
      type: Outcome,
      authScopes: { admin: true },
      args: { input: t.arg({ type: Input, required: true }) },
      resolve: async (_root, { input }, ctx) => {
        const bound = ctx.principal!.teamId;
        const teamId = bound ?? (input.teamId ? String(input.teamId) : null);
        if (!teamId) throw invalidInput('input.teamId is required for a token that is not bound to a team.', 'input.teamId');
        if (bound && input.teamId && String(input.teamId) !== bound) {
          throw new GraphQLError('Team not found.', { extensions: { code: 'NOT_FOUND' } });
        }
        if (!bound && !(await ctx.prisma.team.findUnique({ where: { id: teamId }, select: { id: true } }).catch(() => null))) {
          throw new GraphQLError('Team not found.', { extensions: { code: 'NOT_FOUND' } });
        }
        const parsed = TaskOutcomeInput.safeParse({ taskId: input.taskId, success: input.success, score: input.score, note: input.note });
        if (!parsed.success) {
          const issue = parsed.error.issues[0]!;
          const field = ['input', ...issue.path].join('.');
          throw invalidInput(`${field}: ${issue.message}`, field);
        }
        const outcome = await recordTaskOutcome(ctx.clickhouse, teamId, parsed.data);
        // It changes what costPerTask reports for the team: on record, as every admin mutation.
        const { taskId, success, score } = parsed.data;
        await store(() => ctx.admin.recordAction('recordTaskOutcome', `task:${taskId}`, teamId, { success, score: score ?? null }));
        return outcome;
      },
    }),
  );
}
