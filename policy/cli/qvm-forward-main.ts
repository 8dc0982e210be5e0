import { main } from './qvm-forward.js';

await main();
