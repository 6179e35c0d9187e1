// Starts Swagger UI on the service's own OpenAPI description. A file, not an inline script,
// so the page's Content-Security-Policy can allow scripts from the service only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The online validator badge would send the description to validator.swagger.io.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
