package dev.headpose.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A minimal, strict JSON reader (RFC 8259) for {@code manifest.json} and small index files.
 *
 * <p>Values map to Java as: object {@code ->} {@link LinkedHashMap}{@code <String, Object>} (key order
 * kept), array {@code ->} {@link ArrayList}{@code <Object>}, string {@code ->} {@link String}, number
 * {@code ->} {@link Double}, {@code true/false ->} {@link Boolean}, {@code null ->} {@code null}.
 * It exists because the core module has no dependencies (no Gradle download on the build machine);
 * on Android {@code org.json} would do the same job.
 */
public final class Json {
    private final String s;
    private int i;

    private Json(String text) {
        this.s = text;
    }

    /**
     * Parse one JSON document.
     *
     * @param text the whole document
     * @return the value (see the class comment for the Java types)
     * @throws HeadposeException.InputException on malformed JSON, naming the character offset
     */
    public static Object parse(String text) {
        Json p = new Json(text);
        p.ws();
        Object v = p.value();
        p.ws();
        if (p.i != p.s.length()) {
            throw p.error("end of document");
        }
        return v;
    }

    private HeadposeException.InputException error(String expected) {
        String found = i < s.length() ? "'" + s.charAt(i) + "'" : "end of input";
        return new HeadposeException.InputException(
                "invalid JSON at offset " + i + ": expected " + expected + ", found " + found);
    }

    private void ws() {
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                i++;
            } else {
                break;
            }
        }
    }

    private Object value() {
        if (i >= s.length()) {
            throw error("a value");
        }
        char c = s.charAt(i);
        switch (c) {
            case '{':
                return object();
            case '[':
                return array();
            case '"':
                return string();
            case 't':
                return literal("true", Boolean.TRUE);
            case 'f':
                return literal("false", Boolean.FALSE);
            case 'n':
                return literal("null", null);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return number();
                }
                throw error("a value");
        }
    }

    private Object literal(String word, Object v) {
        if (!s.startsWith(word, i)) {
            throw error("'" + word + "'");
        }
        i += word.length();
        return v;
    }

    private Map<String, Object> object() {
        Map<String, Object> m = new LinkedHashMap<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == '}') {
            i++;
            return m;
        }
        while (true) {
            ws();
            if (i >= s.length() || s.charAt(i) != '"') {
                throw error("a string key");
            }
            String k = string();
            ws();
            if (i >= s.length() || s.charAt(i) != ':') {
                throw error("':'");
            }
            i++;
            ws();
            m.put(k, value());
            ws();
            if (i < s.length() && s.charAt(i) == ',') {
                i++;
            } else if (i < s.length() && s.charAt(i) == '}') {
                i++;
                return m;
            } else {
                throw error("',' or '}'");
            }
        }
    }

    private List<Object> array() {
        List<Object> a = new ArrayList<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == ']') {
            i++;
            return a;
        }
        while (true) {
            ws();
            a.add(value());
            ws();
            if (i < s.length() && s.charAt(i) == ',') {
                i++;
            } else if (i < s.length() && s.charAt(i) == ']') {
                i++;
                return a;
            } else {
                throw error("',' or ']'");
            }
        }
    }

    private String string() {
        i++; // opening quote
        StringBuilder b = new StringBuilder();
        while (true) {
            if (i >= s.length()) {
                throw error("closing '\"'");
            }
            char c = s.charAt(i++);
            if (c == '"') {
                return b.toString();
            }
            if (c < 0x20) {
                i--;
                throw error("no raw control character in a string");
            }
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (i >= s.length()) {
                throw error("an escape character");
            }
            char e = s.charAt(i++);
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (i + 4 > s.length()) {
                        throw error("4 hex digits");
                    }
                    int code = 0;
                    for (int k = 0; k < 4; k++) {
                        int d = Character.digit(s.charAt(i), 16);
                        if (d < 0) {
                            throw error("a hex digit");
                        }
                        code = code * 16 + d;
                        i++;
                    }
                    b.append((char) code); // surrogate pairs arrive as two escapes, kept as UTF-16
                    break;
                default:
                    i--;
                    throw error("one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX");
            }
        }
    }

    private Double number() {
        int start = i;
        if (s.charAt(i) == '-') {
            i++;
        }
        if (i < s.length() && s.charAt(i) == '0') {
            i++;
        } else if (i < s.length() && Character.isDigit(s.charAt(i))) {
            while (i < s.length() && Character.isDigit(s.charAt(i))) {
                i++;
            }
        } else {
            throw error("a digit");
        }
        if (i < s.length() && s.charAt(i) == '.') {
            i++;
            if (i >= s.length() || !Character.isDigit(s.charAt(i))) {
                throw error("a digit after '.'");
            }
            while (i < s.length() && Character.isDigit(s.charAt(i))) {
                i++;
            }
        }
        if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            i++;
            if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                i++;
            }
            if (i >= s.length() || !Character.isDigit(s.charAt(i))) {
                throw error("an exponent digit");
            }
            while (i < s.length() && Character.isDigit(s.charAt(i))) {
                i++;
            }
        }
        return Double.valueOf(s.substring(start, i));
    }

    // -- typed access helpers (used by Manifest and the golden runner) ------------------------

    /** {@code value} as a JSON object, or an error naming {@code where}. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> asObject(Object value, String where) {
        if (!(value instanceof Map)) {
            throw new HeadposeException.InputException(where + ": expected a JSON object, found " + typeName(value));
        }
        return (Map<String, Object>) value;
    }

    /** {@code value} as a JSON array, or an error naming {@code where}. */
    @SuppressWarnings("unchecked")
    public static List<Object> asArray(Object value, String where) {
        if (!(value instanceof List)) {
            throw new HeadposeException.InputException(where + ": expected a JSON array, found " + typeName(value));
        }
        return (List<Object>) value;
    }

    /** {@code value} as a number, or an error naming {@code where}. */
    public static double asNumber(Object value, String where) {
        if (!(value instanceof Double)) {
            throw new HeadposeException.InputException(where + ": expected a number, found " + typeName(value));
        }
        return (Double) value;
    }

    /** {@code value} as an integer (a number without fraction), or an error naming {@code where}. */
    public static int asInt(Object value, String where) {
        double d = asNumber(value, where);
        if (d != Math.rint(d) || Math.abs(d) > Integer.MAX_VALUE) {
            throw new HeadposeException.InputException(where + ": expected an integer, found " + d);
        }
        return (int) d;
    }

    /** {@code value} as a string, or an error naming {@code where}. */
    public static String asString(Object value, String where) {
        if (!(value instanceof String)) {
            throw new HeadposeException.InputException(where + ": expected a string, found " + typeName(value));
        }
        return (String) value;
    }

    /** JSON type name of a parsed value, for messages. */
    public static String typeName(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof Map) {
            return "object";
        }
        if (v instanceof List) {
            return "array";
        }
        if (v instanceof String) {
            return "string";
        }
        if (v instanceof Double) {
            return "number";
        }
        if (v instanceof Boolean) {
            return "boolean";
        }
        return v.getClass().getSimpleName();
    }

    // -- writing --------------------------------------------------------------------------------

    /**
     * Serialise maps, lists, strings, numbers, booleans and null as JSON (two-space indent).
     *
     * <p>Non-finite numbers have no JSON form and are written as {@code null}. Integral doubles
     * are written without a fraction ({@code 3} not {@code 3.0}).
     */
    public static String write(Object value) {
        StringBuilder b = new StringBuilder();
        write(b, value, 0);
        b.append('\n');
        return b.toString();
    }

    private static void indent(StringBuilder b, int n) {
        b.append('\n');
        for (int k = 0; k < n; k++) {
            b.append("  ");
        }
    }

    private static void write(StringBuilder b, Object v, int depth) {
        if (v == null) {
            b.append("null");
        } else if (v instanceof Map) {
            Map<?, ?> m = (Map<?, ?>) v;
            if (m.isEmpty()) {
                b.append("{}");
                return;
            }
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) {
                    b.append(',');
                }
                first = false;
                indent(b, depth + 1);
                quote(b, String.valueOf(e.getKey()));
                b.append(": ");
                write(b, e.getValue(), depth + 1);
            }
            indent(b, depth);
            b.append('}');
        } else if (v instanceof List) {
            List<?> a = (List<?>) v;
            b.append('[');
            for (int k = 0; k < a.size(); k++) {
                if (k > 0) {
                    b.append(", ");
                }
                write(b, a.get(k), depth + 1);
            }
            b.append(']');
        } else if (v instanceof Number) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                b.append("null");
            } else if (d == Math.rint(d) && Math.abs(d) < 1e15) {
                b.append((long) d);
            } else {
                b.append(d);
            }
        } else if (v instanceof Boolean) {
            b.append(v.toString());
        } else {
            quote(b, v.toString());
        }
    }

    private static void quote(StringBuilder b, String str) {
        b.append('"');
        for (int k = 0; k < str.length(); k++) {
            char c = str.charAt(k);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        b.append('"');
    }
}
