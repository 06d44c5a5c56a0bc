// Where the signed-in token lives: this tab's sessionStorage (gone when the tab closes;
// never a URL, a cookie or localStorage). GraphiQL, opened from the console, reads it from
// its opener (graphiql-boot.ts).
export const TOKEN_KEY = 'tollgate.console.token';

export const storedToken = (): string | null => sessionStorage.getItem(TOKEN_KEY);
export const storeToken = (token: string): void => sessionStorage.setItem(TOKEN_KEY, token);
export const forgetToken = (): void => sessionStorage.removeItem(TOKEN_KEY);
