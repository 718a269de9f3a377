// The Express 4 dev dependency is installed under an npm alias; its API is
// what the suite uses of Express 5, so it borrows those types.
declare module 'express4' {
  import express from 'express';
  export default express;
}
