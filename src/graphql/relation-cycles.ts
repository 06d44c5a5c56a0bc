// Refuses a query that follows a list relation inside itself (Team.apiKeys → ApiKey.team →
// Team.apiKeys …). Each such loop multiplies the answer by a list's length, while the depth,
// alias and cost limits count a list without `first` as one row: nine levels of it passed every
// limit and answered 7.5 MB from 20 keys a team (120 MB from 40). No query needs to walk the
// same list twice on one path: what it would find there, it has already selected once.
import {
  type ASTVisitor,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  GraphQLError,
  type GraphQLSchema,
  getNamedType,
  getNullableType,
  isCompositeType,
  isInterfaceType,
  isListType,
  isObjectType,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';

/** Nodes one check may visit (fragments spread many times are walked each time). */
const MAX_VISITS = 20_000;

export function noRepeatedListRelations(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(
        (context: ValidationContext): ASTVisitor => ({
          Document(document) {
            const refusal = repeatedListRelation(context.getSchema(), document);
            if (refusal) context.reportError(new GraphQLError(refusal, { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }));
          },
        }),
      );
    },
  };
}

/** Why the document is refused (a list field selected inside itself), or null. */
export function repeatedListRelation(schema: GraphQLSchema, document: DocumentNode): string | null {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const onPath = new Set<string>();
  const spreading = new Set<string>();
  let visits = 0;

  const walk = (selectionSet: SelectionSetNode, parent: GraphQLCompositeType): string | null => {
    for (const selection of selectionSet.selections) {
      if (++visits > MAX_VISITS) return 'The query is too complex to check (too many fragment expansions).';
      let refusal: string | null = null;
      if (selection.kind === Kind.FIELD) {
        if (!selection.selectionSet || !(isObjectType(parent) || isInterfaceType(parent))) continue;
        const field = parent.getFields()[selection.name.value];
        const type = field && getNamedType(field.type);
        if (!field || !isCompositeType(type)) continue; // unknown fields are other rules' errors
        const key = isListType(getNullableType(field.type)) ? `${parent.name}.${field.name}` : null;
        if (key && onPath.has(key)) return `'${key}' is selected inside itself: a query may follow a list relation once on each path.`;
        if (key) onPath.add(key);
        refusal = walk(selection.selectionSet, type);
        if (key) onPath.delete(key);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const condition = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent;
        if (isCompositeType(condition)) refusal = walk(selection.selectionSet, condition);
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        const condition = fragment && schema.getType(fragment.typeCondition.name.value);
        // A fragment spread inside itself is another rule's error; not walked again here.
        if (!fragment || !isCompositeType(condition) || spreading.has(name)) continue;
        spreading.add(name);
        refusal = walk(fragment.selectionSet, condition);
        spreading.delete(name);
      }
      if (refusal) return refusal;
    }
    return null;
  };

  for (const d of document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    const root = d.operation === 'query' ? schema.getQueryType() : d.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
    const refusal = root ? walk(d.selectionSet, root) : null;
    if (refusal) return refusal;
  }
  return null;
}
